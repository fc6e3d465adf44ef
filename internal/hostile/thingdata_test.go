package hostile_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPDesiredAndConfigOfAnotherAccount: another account's keys of
// every role can neither read nor change a device's desired values or a
// product's configuration file, nor push it; a readonly key of the
// account only reads; nothing they try changes anything.
func TestHTTPDesiredAndConfigOfAnotherAccount(t *testing.T) {
	w := newWorld(t)
	desired := "/v1/products/" + w.T1.Direct.ProductKey + "/devices/devA/desired-properties"
	config := "/v1/products/" + w.T1.Direct.ProductKey + "/config"
	w.do(w.T1.Operator, "PUT", desired, map[string]any{"values": map[string]any{"mode": 1}}, 200)
	w.do(w.T1.Operator, "PUT", config, map[string]any{"content": "secret-ish settings"}, 200)
	beforeD := string(w.do(w.T1.Admin, "GET", desired, nil, 200).Body)
	beforeC := string(w.do(w.T1.Admin, "GET", config, nil, 200).Body)
	set := map[string]any{"values": map[string]any{"mode": 2}}
	upload := map[string]any{"content": "evil"}
	attacks := []struct {
		name, token, method, path string
		body                      any
		status                    int
	}{
		{"anonymous reads desired", "", "GET", desired, nil, 401},
		{"other admin reads desired", w.T2.Admin, "GET", desired, nil, 404},
		{"other operator sets desired", w.T2.Operator, "PUT", desired, set, 404},
		{"other operator deletes desired", w.T2.Operator, "DELETE", desired, nil, 404},
		{"own readonly sets desired", w.T1.Readonly, "PUT", desired, set, 403},
		{"own readonly deletes desired", w.T1.Readonly, "DELETE", desired, nil, 403},
		{"other admin reads the config", w.T2.Admin, "GET", config, nil, 404},
		{"other operator uploads a config", w.T2.Operator, "PUT", config, upload, 404},
		{"other operator pushes the config", w.T2.Operator, "POST", config + ":push", nil, 404},
		{"own readonly uploads a config", w.T1.Readonly, "PUT", config, upload, 403},
		{"own readonly pushes", w.T1.Readonly, "POST", config + ":push", nil, 403},
	}
	for _, a := range attacks {
		if r := w.S.Do(a.token, a.method, a.path, a.body); r.Status != a.status {
			t.Errorf("%s: %d %s, want %d", a.name, r.Status, r.Body, a.status)
		}
	}
	if after := string(w.do(w.T1.Admin, "GET", desired, nil, 200).Body); after != beforeD {
		t.Fatalf("desired values changed: %s, were %s", after, beforeD)
	}
	if after := string(w.do(w.T1.Admin, "GET", config, nil, 200).Body); after != beforeC {
		t.Fatalf("the configuration changed: %s, were %s", after, beforeC)
	}
}

// TestConfigURLsAndDesiredStayWithTheirDevice: account two's devA (the same
// DeviceName) asking its own thing.config.get and desired.get hears only
// of its own product and device; account one's download URL moved to
// account two's product, or stripped of its signature, serves nothing.
func TestConfigURLsAndDesiredStayWithTheirDevice(t *testing.T) {
	w := newWorld(t)
	w.do(w.T1.Operator, "PUT", "/v1/products/"+w.T1.Direct.ProductKey+"/config", map[string]any{"content": "tenant one only"}, 200)
	w.do(w.T1.Operator, "PUT", "/v1/products/"+w.T1.Direct.ProductKey+"/devices/devA/desired-properties", map[string]any{"values": map[string]any{"mode": 1}}, 200)

	one, two := w.device(t, w.T1.DevA), w.device(t, w.T2.DevA)
	in1, in2 := newInbox(), newInbox()
	base1 := "/sys/" + w.T1.Direct.ProductKey + "/devA/"
	base2 := "/sys/" + w.T2.Direct.ProductKey + "/devA/"
	mustSubscribe(t, one, base1+"thing/config/get_reply", in1)
	mustSubscribe(t, two, base2+"thing/config/get_reply", in2)
	mustSubscribe(t, two, base2+"thing/property/desired/get_reply", in2)
	publish(t, two, base2+"thing/config/get", `{"id":"c2","params":{"configScope":"product","getType":"file"}}`)
	var r struct {
		ID   string
		Code int
		Data json.RawMessage
	}
	json.Unmarshal(in2.next(t).Payload(), &r)
	if r.ID != "c2" || r.Code != 6406 {
		t.Fatalf("account two's devA asking its config: %+v; want 6406 (its product has none)", r)
	}
	publish(t, two, base2+"thing/property/desired/get", `{"id":"d2","params":[]}`)
	json.Unmarshal(in2.next(t).Payload(), &r)
	if r.ID != "d2" || r.Code != 200 || string(r.Data) != "{}" {
		t.Fatalf("account two's devA asking its desired values: %+v %s; want none", r, r.Data)
	}
	publish(t, one, base1+"thing/config/get", `{"id":"c1","params":{}}`)
	var got struct {
		Code int
		Data struct{ URL string }
	}
	json.Unmarshal(in1.next(t).Payload(), &got)
	if got.Code != 200 || got.Data.URL == "" {
		t.Fatalf("account one's config: %+v", got)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	status := func(u string) int {
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := status(got.Data.URL); st != 200 {
		t.Fatalf("the genuine URL: %d", st)
	}
	moved := strings.Replace(got.Data.URL, w.T1.Direct.ProductKey, w.T2.Direct.ProductKey, 1)
	unsigned := got.Data.URL[:strings.Index(got.Data.URL, "&sig=")]
	later := strings.Replace(got.Data.URL, "expires=", "expires=9", 1)
	for name, u := range map[string]string{"moved to another product": moved, "without its signature": unsigned, "with a later expiry": later} {
		if st := status(u); st != 404 {
			t.Errorf("the URL %s: %d, want 404", name, st)
		}
	}
}

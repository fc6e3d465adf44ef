package shadowsvc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
	"github.com/corral-iot/corral/internal/shadowsvc"
)

var web = shadowsvc.Origin{Source: "rest"}

func mustUpdate(t *testing.T, e *env, k shadow.Key, req string) shadow.UpdateAWS {
	t.Helper()
	res, err := e.svc.UpdateAWS(context.Background(), k, []byte(req), web)
	if err != nil {
		t.Fatalf("update %s: %v", req, err)
	}
	return res
}

func awsCode(t *testing.T, err error) (int, string) {
	t.Helper()
	var ae *shadow.ErrorAWS
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *shadow.ErrorAWS", err)
	}
	return ae.Code, ae.Message
}

func TestUpdateGetDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := e.key("dev1", "")
	res := mustUpdate(t, e, k, `{"state":{"desired":{"color":"red"}},"clientToken":"t1"}`)
	if res.Next.Version != 1 || res.Delta == nil {
		t.Fatalf("first update: version %d delta %s", res.Next.Version, res.Delta)
	}
	ch := e.rec.take()
	if len(ch) != 1 || ch[0].Source != "rest" || !ch[0].Created || !ch[0].DesiredChanged || ch[0].Cur.Version != 1 ||
		ch[0].Thing != e.pk+".dev1" || ch[0].AccountID != "acc1" || ch[0].ClientToken != "t1" || ch[0].Delta == nil {
		t.Fatalf("changes = %+v", ch)
	}
	mustUpdate(t, e, k, `{"state":{"reported":{"color":"red"}},"version":1}`)
	if ch := e.rec.take(); len(ch) != 1 || ch[0].DesiredChanged || ch[0].Created || ch[0].Delta != nil || ch[0].Prev.Version != 1 {
		t.Fatalf("changes = %+v", ch)
	}
	got, err := e.svc.GetAWS(ctx, k, "g")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		State       map[string]map[string]any `json:"state"`
		Version     int64                     `json:"version"`
		ClientToken string                    `json:"clientToken"`
	}
	if err := json.Unmarshal(got, &doc); err != nil || doc.Version != 2 || doc.State["reported"]["color"] != "red" || doc.ClientToken != "g" || doc.State["delta"] != nil {
		t.Fatalf("get = %s (%v)", got, err)
	}
	del, err := e.svc.DeleteAWS(ctx, k, "", web)
	if err != nil || !strings.Contains(string(del), `"version":2`) {
		t.Fatalf("delete = %s, %v", del, err)
	}
	if ch := e.rec.take(); len(ch) != 1 || !ch[0].Deleted {
		t.Fatalf("changes = %+v", ch)
	}
	_, err = e.svc.GetAWS(ctx, k, "")
	if code, msg := awsCode(t, err); code != 404 || msg != "No shadow exists with name: "+e.pk+".dev1" {
		t.Fatalf("get after delete: %d %s", code, msg)
	}
	// Re-created within 48 h, it continues the version.
	if res := mustUpdate(t, e, k, `{"state":{"reported":{"a":1}}}`); res.Next.Version != 3 {
		t.Fatalf("re-created at version %d, want 3", res.Next.Version)
	}
	// A named shadow is apart from the classic one.
	if res := mustUpdate(t, e, e.key("dev1", "cfg"), `{"state":{"reported":{"a":1}}}`); res.Next.Version != 1 {
		t.Fatalf("named shadow at version %d", res.Next.Version)
	}
}

// Bad input: the exact refusal, nothing stored, the version unchanged, no
// observer told.
func TestUpdateRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := e.key("dev1", "")
	mustUpdate(t, e, k, `{"state":{"reported":{"a":1}}}`)
	e.rec.take()
	deep := `{"state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}`
	cases := []struct {
		name, req string
		code      int
		msg       string
	}{
		{"bad json", `{"state":`, 400, shadow.MsgInvalidJSON},
		{"no state", `{"x":1}`, 400, shadow.MsgMissingState},
		{"state not object", `{"state":1}`, 400, shadow.MsgStateNotObject},
		{"desired not object", `{"state":{"desired":[1]}}`, 400, shadow.MsgDesiredNotObject},
		{"null in array", `{"state":{"reported":{"a":[1,null]}}}`, 400, shadow.MsgInvalidNode},
		{"too deep", deep, 400, shadow.MsgTooDeep},
		{"stale version", `{"state":{"reported":{"a":2}},"version":7}`, 409, shadow.MsgVersionConflict},
		{"long token", `{"state":{"reported":{"a":2}},"clientToken":"` + strings.Repeat("x", 65) + `"}`, 400, shadow.MsgInvalidToken},
		{"too big", `{"state":{"reported":{"a":"` + strings.Repeat("x", 9000) + `"}}}`, 413, shadow.MsgTooLarge},
		{"not utf-8", "{\"state\":{\"reported\":{\"a\":\"\xff\"}}}", 415, shadow.MsgNotUTF8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.svc.UpdateAWS(ctx, k, []byte(c.req), web)
			if code, msg := awsCode(t, err); code != c.code || msg != c.msg {
				t.Fatalf("got %d %q, want %d %q", code, msg, c.code, c.msg)
			}
			doc, err := e.svc.Document(ctx, k)
			if err != nil || doc.Version != 1 || doc.Reported["a"] != json.Number("1") {
				t.Fatalf("stored %+v, %v", doc, err)
			}
			if ch := e.rec.take(); len(ch) != 0 {
				t.Fatalf("observers told %+v", ch)
			}
		})
	}
	t.Run("unknown thing", func(t *testing.T) {
		_, err := e.svc.UpdateAWS(ctx, e.key("nobody1", ""), []byte(`{"state":{}}`), web)
		if code, msg := awsCode(t, err); code != 404 || msg != shadow.MsgThingNotFound {
			t.Fatalf("got %d %q", code, msg)
		}
	})
	t.Run("invalid name", func(t *testing.T) {
		_, err := e.svc.UpdateAWS(ctx, e.key("dev1", "bad/name"), []byte(`{"state":{}}`), web)
		if code, msg := awsCode(t, err); code != 400 || msg != shadowsvc.MsgInvalidName {
			t.Fatalf("got %d %q", code, msg)
		}
	})
	t.Run("unknown named shadow", func(t *testing.T) {
		_, err := e.svc.GetAWS(ctx, e.key("dev1", "none"), "")
		if code, msg := awsCode(t, err); code != 404 || msg != shadow.MsgNoShadow("none") {
			t.Fatalf("got %d %q", code, msg)
		}
		_, err = e.svc.DeleteAWS(ctx, e.key("dev1", "none"), "", web)
		if code, _ := awsCode(t, err); code != 404 {
			t.Fatalf("delete got %d", code)
		}
	})
}

// Concurrent writers of one shadow serialise on the version: every
// update is applied once, versions 1..n.
func TestConcurrentUpdates(t *testing.T) {
	e := newEnv(t)
	k := e.key("dev1", "")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.UpdateAWS(context.Background(), k, fmt.Appendf(nil, `{"state":{"reported":{"k%d":%d}}}`, i, i), web)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	doc, err := e.svc.Document(context.Background(), k)
	if err != nil || doc.Version != n || len(doc.Reported) != n {
		t.Fatalf("version %d with %d keys, %v", doc.Version, len(doc.Reported), err)
	}
}

func TestAlibaba(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := e.key("dev1", "ignored")
	res, err := e.svc.Alibaba(ctx, k, []byte(`{"method":"update","state":{"reported":{"t":20}},"version":5}`), true)
	if err != nil || !res.Changed || res.Next.Version != 5 {
		t.Fatalf("update: %+v %v", res, err)
	}
	if ch := e.rec.take(); len(ch) != 1 || ch[0].Source != "alibaba" || !ch[0].FromDevice || ch[0].Key.Name != "" {
		t.Fatalf("changes %+v", ch)
	}
	res, err = e.svc.Alibaba(ctx, k, []byte(`{"method":"update","state":{"reported":{"t":21}},"version":5}`), true)
	var ae *shadow.AlibabaError
	if !errors.As(err, &ae) || ae.Code != shadow.AliVersionConflict || !strings.Contains(string(res.Reply), `"errorcode":"409"`) {
		t.Fatalf("stale version: %v %s", err, res.Reply)
	}
	// An application's desired is the same document the AWS dialect sees.
	if _, err := e.svc.Alibaba(ctx, k, []byte(`{"method":"update","state":{"desired":{"t":25}}}`), false); err != nil {
		t.Fatal(err)
	}
	if ch := e.rec.take(); len(ch) != 1 || !ch[0].DesiredChanged || ch[0].FromDevice {
		t.Fatalf("changes %+v", ch)
	}
	got, err := e.svc.GetAWS(ctx, e.key("dev1", ""), "")
	if err != nil || !strings.Contains(string(got), `"delta":{"t":25}`) || !strings.Contains(string(got), `"version":6`) {
		t.Fatalf("aws get %s %v", got, err)
	}
	// A get changes nothing and tells nobody.
	res, err = e.svc.Alibaba(ctx, k, []byte(`{"method":"get"}`), true)
	if err != nil || res.Changed || len(e.rec.take()) != 0 {
		t.Fatalf("get: %+v %v", res, err)
	}
	if _, err := e.svc.Alibaba(ctx, e.key("nobody1", ""), []byte(`{"method":"get"}`), true); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
}

func TestSinceAndHistory(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := e.key("dev1", "")
	for i := 1; i <= 12; i++ {
		mustUpdate(t, e, k, fmt.Sprintf(`{"state":{"reported":{"n":%d}}}`, i))
		e.advance(time.Second)
	}
	mustUpdate(t, e, k, `{"state":{"desired":{"x":true}}}`)
	h, err := e.svc.History(ctx, k)
	if err != nil || len(h) != shadowsvc.DefaultHistory || h[0].Version != 4 || h[len(h)-1].Version != 13 {
		t.Fatalf("history: %d versions (%v)", len(h), err)
	}
	c, err := e.svc.Since(ctx, k, 11)
	if err != nil || c.From != 11 || c.To != 13 || c.Reported["n"] != json.Number("12") || c.Desired["x"] != true {
		t.Fatalf("since 11: %+v %v", c, err)
	}
	if c, err := e.svc.Since(ctx, k, 13); err != nil || !c.Empty() {
		t.Fatalf("since current: %+v %v", c, err)
	}
	if _, err := e.svc.Since(ctx, k, 1); !errors.Is(err, shadow.ErrVersionNotKept) {
		t.Fatalf("since 1: %v", err)
	}
	if _, err := e.svc.History(ctx, e.key("dev1", "none")); !errors.Is(err, shadow.ErrNoShadow) {
		t.Fatalf("history of none: %v", err)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, n := range []string{"b", "a", "c"} {
		mustUpdate(t, e, e.key("dev1", n), `{"state":{"reported":{"x":1}}}`)
	}
	mustUpdate(t, e, e.key("dev1", ""), `{"state":{"reported":{"x":1}}}`)
	names, err := e.svc.List(ctx, e.pk, "dev1", "a", 10)
	if err != nil || strings.Join(names, ",") != "b,c" {
		t.Fatalf("list = %v, %v", names, err)
	}
	if _, err := e.svc.List(ctx, e.pk, "nobody1", "", 10); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
}

func TestSettings(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	set, err := e.svc.Settings(ctx, e.pk)
	if err != nil || set != shadowsvc.DefaultSettings() {
		t.Fatalf("defaults = %+v, %v", set, err)
	}
	for _, bad := range []string{`{"maxStateBytes":70000}`, `{"maxStateBytes":0}`, `{"history":-1}`, `{"history":101}`, `{"presence":"yes"}`, `{"other":1}`, `[`, `{} {}`} {
		if _, err := e.svc.UpdateSettings(ctx, e.pk, []byte(bad)); !errors.Is(err, shadowsvc.ErrInvalidSettings) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if set, _ := e.svc.Settings(ctx, e.pk); set != shadowsvc.DefaultSettings() {
		t.Fatalf("refusals changed the settings: %+v", set)
	}
	set, err = e.svc.UpdateSettings(ctx, e.pk, []byte(`{"maxStateBytes":16,"history":2}`))
	if err != nil || set.MaxStateBytes != 16 || set.History != 2 || !set.Presence {
		t.Fatalf("update = %+v, %v", set, err)
	}
	k := e.key("dev1", "")
	_, err = e.svc.UpdateAWS(ctx, k, []byte(`{"state":{"reported":{"a":"0123456789"}}}`), web)
	if code, _ := awsCode(t, err); code != 413 {
		t.Fatalf("over the product's limit: %d", code)
	}
	for i := range 4 {
		mustUpdate(t, e, k, fmt.Sprintf(`{"state":{"reported":{"a":%d}}}`, i))
	}
	if h, err := e.svc.History(ctx, k); err != nil || len(h) != 2 {
		t.Fatalf("history kept %d, want 2 (%v)", len(h), err)
	}
}

func TestPresence(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	at := e.clock()
	if err := e.svc.SetConnected(ctx, e.pk, "dev1", true, "", at); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetConnected(ctx, e.pk, "dev1", true, "", at); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetConnected(ctx, e.pk, "dev1", false, "keepalive timeout", at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	doc, err := e.svc.Document(ctx, e.key("dev1", ""))
	if err != nil || doc.Version != 2 || doc.Reported["connected"] != false {
		t.Fatalf("doc %+v %v", doc, err)
	}
	if md, _ := doc.Metadata.Reported["connected"].(shadow.Stamp); md != (shadow.Stamp{At: at.Add(time.Minute).Unix(), Reason: "keepalive timeout"}) {
		t.Fatalf("connected metadata %v", md)
	}
	// Back online: a fresh stamp, no reason.
	if err := e.svc.SetConnected(ctx, e.pk, "dev1", true, "", at.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	doc, _ = e.svc.Document(ctx, e.key("dev1", ""))
	if md, ok := doc.Metadata.Reported["connected"].(shadow.Stamp); !ok || md != (shadow.Stamp{At: at.Add(2 * time.Minute).Unix()}) || doc.Reported["connected"] != true {
		t.Fatalf("reconnected: %v %v", doc.Reported, md)
	}
	ch := e.rec.take()
	if len(ch) != 3 || ch[1].Source != "presence" || ch[1].Reason != "keepalive timeout" {
		t.Fatalf("changes %+v", ch)
	}
	if _, err := e.svc.UpdateSettings(ctx, e.pk, []byte(`{"presence":false}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetConnected(ctx, e.pk, "dev2", true, "", at); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Document(ctx, e.key("dev2", "")); !errors.Is(err, shadow.ErrNoShadow) {
		t.Fatalf("presence off wrote a shadow: %v", err)
	}
}

func TestThingModelCheck(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	model := `{"properties":[{"identifier":"temp","name":"t","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}]}`
	if _, err := e.reg.SetThingModel(ctx, operator, e.pk, []byte(model)); err != nil {
		t.Fatal(err)
	}
	k := e.key("dev1", "")
	mustUpdate(t, e, k, `{"state":{"desired":{"temp":500,"other":1}}}`) // off by default
	if _, err := e.svc.UpdateSettings(ctx, e.pk, []byte(`{"checkThingModel":true}`)); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, e, k, `{"state":{"desired":{"temp":50,"other":null}}}`)
	for _, req := range []string{`{"state":{"desired":{"temp":500}}}`, `{"state":{"reported":{"nope":1}}}`} {
		_, err := e.svc.UpdateAWS(ctx, k, []byte(req), web)
		code, msg := awsCode(t, err)
		if code != 400 || !(strings.Contains(msg, "temp") || strings.Contains(msg, "nope")) {
			t.Fatalf("%s: %d %q", req, code, msg)
		}
	}
	res, err := e.svc.Alibaba(ctx, k, []byte(`{"method":"update","state":{"reported":{"temp":"hot"}}}`), true)
	var ae *shadow.AlibabaError
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "temp") || !strings.Contains(string(res.Reply), `"status":"error"`) {
		t.Fatalf("alibaba: %v %s", err, res.Reply)
	}
	if doc, _ := e.svc.Document(ctx, k); doc.Version != 2 {
		t.Fatalf("version moved to %d", doc.Version)
	}
}

// Devices are cached; registry events drop them at once.
func TestDeviceChanges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := e.key("dev1", "")
	mustUpdate(t, e, k, `{"state":{"reported":{"a":1}}}`)
	name := "renamed-thing"
	if _, err := e.reg.UpdateDevice(ctx, operator, e.pk, "dev1", registry.DevicePatch{ThingName: &name}); err != nil {
		t.Fatal(err)
	}
	e.rec.take()
	mustUpdate(t, e, k, `{"state":{"reported":{"a":2}}}`)
	if ch := e.rec.take(); len(ch) != 1 || ch[0].Thing != name {
		t.Fatalf("after the rename: %+v", ch)
	}
	if err := e.reg.DeleteDevice(ctx, operator, e.pk, "dev1"); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.UpdateAWS(ctx, k, []byte(`{"state":{"reported":{"a":3}}}`), web)
	if code, msg := awsCode(t, err); code != 404 || msg != shadow.MsgThingNotFound {
		t.Fatalf("after the delete: %d %q", code, msg)
	}
	if _, err := e.svc.Document(ctx, k); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("document after the delete: %v", err)
	}
}

// TestUpdateAfterAnotherWriter: the document an update last stored is
// kept for the next one; when another node (here a second Service on the
// same store) or another path (Alibaba, delete) wrote in between, the next
// AWS update still applies to what is stored, version checks included.
func TestUpdateAfterAnotherWriter(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := e.key("dev1", "")
	other := shadowsvc.New(shadowsvc.Options{Store: e.st, Settings: e.st, Devices: e.reg, Now: e.clock})
	steps := []struct {
		name        string
		before      func() error // the other writer, between this node's updates
		req         string
		wantVersion int64
		wantCode    int // 0: accepted
	}{
		{"first", nil, `{"state":{"reported":{"a":1}}}`, 1, 0},
		{"again, from the kept document", nil, `{"state":{"reported":{"b":2}},"version":1}`, 2, 0},
		{"another node wrote", func() error {
			_, err := other.UpdateAWS(ctx, k, []byte(`{"state":{"reported":{"c":3}}}`), web)
			return err
		}, `{"state":{"reported":{"d":4}}}`, 4, 0},
		{"another node wrote, version given", func() error {
			_, err := other.UpdateAWS(ctx, k, []byte(`{"state":{"reported":{"e":5}}}`), web)
			return err
		}, `{"state":{"reported":{"f":6}},"version":5}`, 6, 0},
		{"stale version still refused", nil, `{"state":{"reported":{"g":7}},"version":5}`, 0, 409},
		{"alibaba wrote", func() error {
			_, err := e.svc.Alibaba(ctx, k, []byte(`{"method":"update","state":{"reported":{"h":8}},"version":0}`), true)
			return err
		}, `{"state":{"reported":{"i":9}},"version":7}`, 8, 0},
		{"deleted by another node", func() error {
			_, err := other.DeleteAWS(ctx, k, "", web)
			return err
		}, `{"state":{"reported":{"j":10}}}`, 9, 0},
	}
	for _, st := range steps {
		if st.before != nil {
			if err := st.before(); err != nil {
				t.Fatalf("%s: other writer: %v", st.name, err)
			}
		}
		res, err := e.svc.UpdateAWS(ctx, k, []byte(st.req), web)
		if st.wantCode != 0 {
			if code, _ := awsCode(t, err); code != st.wantCode {
				t.Fatalf("%s: code %d, want %d", st.name, code, st.wantCode)
			}
			continue
		}
		if err != nil || res.Next.Version != st.wantVersion {
			t.Fatalf("%s: version %d (%v), want %d", st.name, res.Next.Version, err, st.wantVersion)
		}
		doc, err := e.svc.Document(ctx, k)
		if err != nil || !doc.Equal(res.Next) {
			t.Fatalf("%s: stored %+v (%v), answered %+v", st.name, doc, err, res.Next)
		}
		// Observers get the stored forms when the service has them, and
		// they are the documents' own (Prev, beside PrevStored, may hold
		// only its version: an update applied in place).
		ch := e.rec.take()
		c := ch[len(ch)-1]
		prev, _ := c.Prev.MarshalJSON()
		cur, _ := c.Cur.MarshalJSON()
		inPlace := len(c.Prev.Desired)+len(c.Prev.Reported) == 0
		if (c.PrevStored != nil && !inPlace && string(c.PrevStored) != string(prev)) || string(c.CurStored) != string(cur) {
			t.Fatalf("%s: stored forms %s / %s, want %s / %s", st.name, c.PrevStored, c.CurStored, prev, cur)
		}
		if c.PrevStored != nil {
			p, err := shadow.Parse(c.PrevStored)
			if err != nil || p.Version != c.Prev.Version || p.Version != c.Cur.Version-1 {
				t.Fatalf("%s: previous stored form %s (%v), previous version %d, current %d", st.name, c.PrevStored, err, c.Prev.Version, c.Cur.Version)
			}
		}
		if i := len(ch) - 1; st.name == "again, from the kept document" && ch[i].PrevStored == nil {
			t.Fatalf("%s: the kept document's stored form was not passed on", st.name)
		}
	}
	doc, _ := e.svc.Document(ctx, k)
	if _, ok := doc.Reported["a"]; ok || doc.Reported["j"] == nil {
		t.Fatalf("after the delete, reported = %v, want only j", doc.Reported)
	}
}

// A device's reports of leaves are merged into the stored form kept for
// its shadow (shadow.ApplyAWSStored), parsed no more: the same answers,
// documents and history as through the parsed document, and a request the
// merge does not take (a removal, a nested object, desired) still applied.
func TestDeviceReportsMerged(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := e.key("dev1", "")
	device := shadowsvc.Origin{Source: "aws", FromDevice: true}
	ts := e.clock().Unix()
	steps := []struct {
		name, req  string
		parsed     bool // kept parsed after it: not merged
		wantCode   int
		wantState  string // get's state after it
		wantAccept string // when not empty
	}{
		{"first report", `{"state":{"reported":{"a":1,"n":{"x":1}}}}`, true, 0, `{"reported":{"a":1,"n":{"x":1}}}`, ""},
		{"leaves merged", `{"state":{"reported":{"a":2,"b":"y"}},"clientToken":"t"}`, false, 0, `{"reported":{"a":2,"b":"y","n":{"x":1}}}`,
			fmt.Sprintf(`{"state":{"reported":{"a":2,"b":"y"}},"metadata":{"reported":{"a":{"timestamp":%d},"b":{"timestamp":%d}}},"version":2,"timestamp":%[1]d,"clientToken":"t"}`, ts, ts)},
		{"stale version", `{"state":{"reported":{"a":3}},"version":1}`, true, 409, `{"reported":{"a":2,"b":"y","n":{"x":1}}}`, ""},
		// The refusal dropped the kept form (another node may have written).
		{"read again", `{"state":{"reported":{"c":true}},"version":2}`, true, 0, `{"reported":{"a":2,"b":"y","c":true,"n":{"x":1}}}`, ""},
		{"merged again", `{"state":{"reported":{"c":false}},"version":3}`, false, 0, `{"reported":{"a":2,"b":"y","c":false,"n":{"x":1}}}`, ""},
		{"a removal", `{"state":{"reported":{"a":null}}}`, true, 0, `{"reported":{"b":"y","c":false,"n":{"x":1}}}`, ""},
		{"merged after it", `{"state":{"reported":{"n":"flat"}}}`, false, 0, `{"reported":{"b":"y","c":false,"n":"flat"}}`, ""},
	}
	for _, st := range steps {
		e.rec.take()
		prev, _ := e.st.GetShadow(ctx, k)
		res, err := e.svc.UpdateAWS(ctx, k, []byte(st.req), device)
		if st.wantCode != 0 {
			if code, _ := awsCode(t, err); code != st.wantCode {
				t.Fatalf("%s: %v, want %d", st.name, err, st.wantCode)
			}
		} else if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		} else if st.wantAccept != "" && string(res.Accepted) != st.wantAccept {
			t.Fatalf("%s: accepted %s\nwant %s", st.name, res.Accepted, st.wantAccept)
		}
		if _, parsed := shadowsvc.Cached(e.svc, k); st.wantCode == 0 && parsed != st.parsed {
			t.Fatalf("%s: kept parsed %v, want %v", st.name, parsed, st.parsed)
		}
		got, err := e.svc.GetAWS(ctx, k, "")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ State json.RawMessage }
		if err := json.Unmarshal(got, &doc); err != nil || string(doc.State) != st.wantState {
			t.Fatalf("%s: state %s, want %s", st.name, doc.State, st.wantState)
		}
		if st.wantCode != 0 {
			continue
		}
		// The change as observers get it: the stored forms before and after.
		chs := e.rec.take()
		cur, _ := e.st.GetShadow(ctx, k)
		if len(chs) != 1 || string(chs[0].PrevStored) != string(prev.Doc) || string(chs[0].CurStored) != string(cur.Doc) ||
			chs[0].Prev.Version != prev.Version || chs[0].Cur.Version != cur.Version || chs[0].DesiredChanged || chs[0].Delta != nil {
			t.Fatalf("%s: changes %+v", st.name, chs)
		}
	}
	h, err := e.svc.History(ctx, k)
	if err != nil || len(h) != 6 {
		t.Fatalf("history: %d versions, %v; want 6", len(h), err)
	}
}

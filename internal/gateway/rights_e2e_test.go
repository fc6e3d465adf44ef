package gateway_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
)

// subAck subscribes the gateway to a filter and returns the SUBACK code.
func (g *gwClient) subAck(filter string) byte {
	g.t.Helper()
	tok := g.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { g.msgs <- m })
	if !tok.WaitTimeout(5 * time.Second) {
		g.t.Fatalf("SUBSCRIBE %s: no SUBACK within 5 s", filter)
	}
	if err := tok.Error(); err != nil {
		g.t.Fatalf("SUBSCRIBE %s: %v", filter, err)
	}
	code, ok := tok.(*paho.SubscribeToken).Result()[filter]
	if !ok {
		g.t.Fatalf("SUBSCRIBE %s: no result", filter)
	}
	return code
}

// mayUse reports whether the gateway may subscribe to a sub-device's topics now.
func (g *gwClient) mayUse(sub apptest.Device) bool {
	g.t.Helper()
	return g.subAck("/sys/"+sub.ProductKey+"/"+sub.DeviceName+"/thing/service/property/set") < 0x80
}

func ident(d apptest.Device) map[string]string {
	return map[string]string{"productKey": d.ProductKey, "deviceName": d.DeviceName}
}

// TestSubDeviceRightsFollowTheTopology: a gateway's rights on a sub-device's
// topics last exactly as long as the sub-device is logged in through it:
// they end at logout, at topo.delete while logged in, and when an operator
// moves the sub-device to another gateway.
func TestSubDeviceRightsFollowTheTopology(t *testing.T) {
	f := setup(t, 2)
	g := connectGateway(t, f.s, f.gw)
	hub2 := f.s.CreateDevice(f.gwProd.ProductKey, "hub-02")
	g2 := connectGateway(t, f.s, hub2)
	s0, s1 := f.subs[0], f.subs[1]
	if r := g.call("sys", "thing/topo/add", []any{subSign(s0), subSign(s1)}); r.Code != 200 {
		t.Fatalf("topo.add: %+v", r)
	}
	if g.mayUse(s0) {
		t.Fatal("rights before login")
	}
	login := func(sub apptest.Device) {
		t.Helper()
		if r := g.call("session", "combine/login", subSign(sub)); r.Code != 200 {
			t.Fatalf("login %s: %+v", sub.DeviceName, r)
		}
		if !g.mayUse(sub) {
			t.Fatalf("no rights on %s while logged in", sub.DeviceName)
		}
	}

	// Logout ends the rights.
	login(s0)
	if r := g.call("session", "combine/logout", ident(s0)); r.Code != 200 {
		t.Fatalf("logout: %+v", r)
	}
	if g.mayUse(s0) {
		t.Fatal("rights on a sub-device after its logout")
	}

	// topo.delete while logged in ends them too.
	login(s0)
	if r := g.call("sys", "thing/topo/delete", []any{ident(s0)}); r.Code != 200 {
		t.Fatalf("topo.delete: %+v", r)
	}
	if g.mayUse(s0) {
		t.Fatal("rights on a sub-device deleted from the topology while logged in")
	}

	// A move by the operator: the old gateway loses them, the new one
	// gets them only once it logs the sub-device in.
	login(s1)
	f.s.Admin("POST", "/v1/products/"+hub2.ProductKey+"/devices/"+hub2.DeviceName+"/subdevices",
		map[string]any{"subdevices": []any{ident(s1)}}, 200)
	if g.mayUse(s1) {
		t.Fatal("the old gateway kept rights on a sub-device moved away")
	}
	if g2.mayUse(s1) {
		t.Fatal("the new gateway has rights before logging the sub-device in")
	}
	// The old gateway's subscription from before the move delivers nothing
	// more: a command for s1, then one for the gateway itself as a fence.
	for len(g.msgs) > 0 {
		<-g.msgs
	}
	subSet := "/sys/" + s1.ProductKey + "/" + s1.DeviceName + "/thing/service/property/set"
	fence := "/sys/" + f.gw.ProductKey + "/" + f.gw.DeviceName + "/thing/service/property/set"
	for _, topic := range []string{subSet, fence} {
		if r := f.s.Do(f.s.AdminKey, "POST", "/v1/publish?qos=1&topic="+topic, `{"params":{"on":1}}`); r.Status != 204 {
			t.Fatalf("publish %s: %d %s", topic, r.Status, r.Body)
		}
	}
	deadline := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case m := <-g.msgs:
			if m.Topic() == subSet {
				t.Fatal("the old gateway received a command for a sub-device moved away")
			}
			done = m.Topic() == fence
		case <-deadline:
			t.Fatal("the fence command never reached the gateway")
		}
	}
	if r := g2.call("session", "combine/login", subSign(s1)); r.Code != 200 {
		t.Fatalf("login at the new gateway: %+v", r)
	}
	if !g2.mayUse(s1) {
		t.Fatal("the new gateway has no rights after login")
	}
}

// TestRelayedPostsFollowTheSubDeviceModel: a post a gateway relays for a
// sub-device is checked against the sub-device's product model (not the
// gateway's), answered on the sub-device's _reply, stored only when good;
// a model update applies to the very next post.
func TestRelayedPostsFollowTheSubDeviceModel(t *testing.T) {
	f := setup(t, 1)
	sub := f.subs[0]
	model := func(max string) string {
		return `{"properties":[{"identifier":"Temperature","name":"T","accessMode":"rw","dataType":{"type":"float","specs":{"min":"-40","max":"` + max + `"}}}],"events":[],"services":[]}`
	}
	f.s.Admin("PUT", "/v1/products/"+f.subProd.ProductKey+"/tsl", model("50"), 200)
	g := connectGateway(t, f.s, f.gw)
	if r := g.call("sys", "thing/topo/add", []any{subSign(sub)}); r.Code != 200 {
		t.Fatalf("topo.add: %+v", r)
	}
	if r := g.call("session", "combine/login", subSign(sub)); r.Code != 200 {
		t.Fatalf("login: %+v", r)
	}
	g.sub("/sys/" + sub.ProductKey + "/" + sub.DeviceName + "/thing/event/property/post_reply")
	post := "/sys/" + sub.ProductKey + "/" + sub.DeviceName + "/thing/event/property/post"
	send := func(id string, temp float64) reply {
		t.Helper()
		return g.raw(post, []byte(fmt.Sprintf(`{"id":"%s","version":"1.0","params":{"Temperature":%v}}`, id, temp)), id)
	}
	stored := func() string {
		var props struct {
			Properties []struct {
				Identifier string
				Value      json.RawMessage
			}
		}
		f.s.Admin("GET", "/v1/products/"+sub.ProductKey+"/devices/"+sub.DeviceName+"/properties", nil, 200).JSON(t, &props)
		for _, p := range props.Properties {
			if p.Identifier == "Temperature" {
				return string(p.Value)
			}
		}
		return ""
	}
	if r := send("1", 21.5); r.Code != 200 {
		t.Fatalf("good relayed post: %+v", r)
	}
	if r := send("2", 80); r.Code != 6303 || !strings.Contains(r.Message, "Temperature") {
		t.Fatalf("out-of-range relayed post: %+v", r)
	}
	if v := stored(); v != "21.5" {
		t.Fatalf("stored Temperature %q: the bad post must change nothing", v)
	}
	// The model now allows up to 100: the very next post is checked against it.
	f.s.Admin("PUT", "/v1/products/"+f.subProd.ProductKey+"/tsl", model("100"), 200)
	if r := send("3", 80); r.Code != 200 {
		t.Fatalf("post after the model update: %+v", r)
	}
	if v := stored(); v != "80" {
		t.Fatalf("stored Temperature %q after the update, want 80", v)
	}
}

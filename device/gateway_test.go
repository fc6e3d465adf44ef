package device_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/device"
	"github.com/corral-iot/corral/internal/apptest"
)

type world struct {
	s    *apptest.Server
	gw   device.Triple
	subs []device.Triple
}

func newWorld(t *testing.T, n int) world {
	s := apptest.Start(t)
	gp := s.CreateProduct("hub", map[string]any{"nodeType": "gateway"})
	sp := s.CreateProduct("sensor", map[string]any{"nodeType": "subdevice"})
	g := s.CreateDevice(gp.ProductKey, "hub-01")
	w := world{s: s, gw: device.Triple{ProductKey: g.ProductKey, DeviceName: g.DeviceName, DeviceSecret: g.DeviceSecret}}
	for i := 0; i < n; i++ {
		d := s.CreateDevice(sp.ProductKey, fmt.Sprintf("sensor-%02d", i))
		w.subs = append(w.subs, device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret})
	}
	return w
}

func (w world) open(t *testing.T, state string, deleted chan device.SubKey, synced chan error) *device.Gateway {
	t.Helper()
	g, err := device.NewGateway(context.Background(), device.GatewayOptions{
		Options:      device.Options{Broker: "tcp://" + w.s.App.Broker().Addr("tcp"), Triple: w.gw},
		StateFile:    state,
		OnSubDeleted: func(k device.SubKey) { deleted <- k },
		OnSynced:     func(err error) { synced <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// watch subscribes an application client (the admin key) to a topic and
// returns its payloads.
func (w world) watch(t *testing.T, topic string) <-chan string {
	t.Helper()
	kid, secret, _ := strings.Cut(w.s.AdminKey, ".")
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + w.s.App.Broker().Addr("tcp")).
		SetClientID("watcher").SetUsername(kid).SetPassword(secret).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: timed out or %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	ch := make(chan string, 10)
	tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { ch <- string(m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil || tok.(*paho.SubscribeToken).Result()[topic] >= 0x80 {
		t.Fatalf("watcher subscribe %s: timed out, refused or %v", topic, tok.Error())
	}
	return ch
}

func (w world) status(t *testing.T, d device.Triple) string {
	var dev struct{ Status string }
	w.s.Admin("GET", "/v1/products/"+d.ProductKey+"/devices/"+d.DeviceName, nil, 200).JSON(t, &dev)
	return dev.Status
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	for i := 0; i < 250; i++ {
		if f() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestGatewayStory drives the whole story: sub-devices come online and are
// proxied and logged in; the gateway goes offline; an operator deletes a
// sub-device through the API; the gateway restarts from its state file and
// drops that sub-device; a sub-device deleted locally while offline is
// deleted on the platform at the next connect.
func TestGatewayStory(t *testing.T) {
	w := newWorld(t, 3)
	state := filepath.Join(t.TempDir(), "gateway.json")
	deleted := make(chan device.SubKey, 10)
	synced := make(chan error, 10)
	g := w.open(t, state, deleted, synced)
	if err := g.SubDeviceOnlineBatch(context.Background(), w.subs); err != nil {
		t.Fatal(err)
	}
	for _, s := range w.subs {
		eventually(t, s.DeviceName+" online", func() bool { return w.status(t, s) == "online" })
	}
	cloud, err := g.TopoGet(context.Background())
	if err != nil || len(cloud) != 3 {
		t.Fatalf("cloud topology: %v %v", cloud, err)
	}
	// Data up for a sub-device reaches the platform on its own topic.
	post := "/sys/" + w.subs[0].ProductKey + "/" + w.subs[0].DeviceName + "/thing/event/property/post"
	up := w.watch(t, post)
	if err := g.PublishFor(context.Background(), w.subs[0].Key(), "thing/event/property/post", 1, []byte(`{"id":"1","params":{"t":21}}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-up:
		if got != `{"id":"1","params":{"t":21}}` {
			t.Fatalf("relayed post = %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the sub-device's post never reached the platform")
	}
	// The gateway goes away; its sub-devices go offline with it.
	g.Close()
	for _, s := range w.subs {
		eventually(t, s.DeviceName+" offline", func() bool { return w.status(t, s) == "offline" })
	}
	// While it is away: the operator deletes sensor-01 on the platform,
	// and a user deletes sensor-02 on the gateway (which is offline).
	w.s.Admin("DELETE", "/v1/products/"+w.subs[1].ProductKey+"/devices/"+w.subs[1].DeviceName, nil, 204)
	if err := g.DeleteSubDevice(context.Background(), w.subs[2].Key()); err != nil {
		t.Fatal(err)
	}
	var st struct {
		Topology []device.Triple `json:"topology"`
		Removed  []device.SubKey `json:"removed"`
	}
	data, _ := os.ReadFile(state)
	json.Unmarshal(data, &st)
	if len(st.Topology) != 2 || len(st.Removed) != 1 || st.Removed[0] != w.subs[2].Key() {
		t.Fatalf("persisted state after an offline delete: %s", data)
	}

	// Restart: the new gateway loads its lists and syncs.
	g2 := w.open(t, state, deleted, synced)
	defer g2.Close()
	select {
	case k := <-deleted:
		if k != w.subs[1].Key() {
			t.Fatalf("dropped %v, want %v", k, w.subs[1].Key())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the SDK did not drop the sub-device deleted in the cloud")
	}
	local := g2.Local()
	if len(local) != 1 || local[0] != w.subs[0].Key() {
		t.Fatalf("local topology after sync: %v", local)
	}
	if len(g2.Removed()) != 0 {
		t.Fatalf("pending deletes not sent: %v", g2.Removed())
	}
	cloud, _ = g2.TopoGet(context.Background())
	if len(cloud) != 1 || cloud[0] != w.subs[0].Key() {
		t.Fatalf("cloud topology after sync: %v", cloud)
	}
}

// TestGatewayReconnectAndTopoChange: a kicked gateway reconnects by itself,
// resyncs and logs its connected sub-devices back in; a topo.change pushed
// while it is online drops the sub-device at once.
func TestGatewayReconnectAndTopoChange(t *testing.T) {
	w := newWorld(t, 2)
	deleted := make(chan device.SubKey, 10)
	synced := make(chan error, 10)
	g := w.open(t, filepath.Join(t.TempDir(), "gw.json"), deleted, synced)
	defer g.Close()
	if err := g.SubDeviceOnlineBatch(context.Background(), w.subs); err != nil {
		t.Fatal(err)
	}
	w.s.App.Broker().Kick(w.gw.ProductKey, w.gw.DeviceName, "TEST")
	select {
	case err := <-synced:
		if err != nil {
			t.Fatalf("resync: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no resync after reconnect")
	}
	for _, s := range w.subs {
		eventually(t, s.DeviceName+" back online", func() bool { return w.status(t, s) == "online" && g.LoggedIn(s.Key()) })
	}
	w.s.Admin("DELETE", "/v1/products/"+w.subs[0].ProductKey+"/devices/"+w.subs[0].DeviceName, nil, 204)
	select {
	case k := <-deleted:
		if k != w.subs[0].Key() {
			t.Fatalf("dropped %v", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("topo.change not handled")
	}
	// Deleting on the gateway while online tells the platform at once.
	if err := g.DeleteSubDevice(context.Background(), w.subs[1].Key()); err != nil {
		t.Fatal(err)
	}
	cloud, _ := g.TopoGet(context.Background())
	if len(cloud) != 0 || len(g.Removed()) != 0 {
		t.Fatalf("after local delete: cloud %v, pending %v", cloud, g.Removed())
	}
}

var _ sync.Mutex

// TestGatewayPackPost: one pack post carries the gateway's own values and
// its logged-in sub-devices'; each lands on its device, checked against
// its product's model; a sub-device not logged in fails the call.
func TestGatewayPackPost(t *testing.T) {
	w := newWorld(t, 2)
	model, err := os.ReadFile("../internal/thing/testdata/model.json")
	if err != nil {
		t.Fatal(err)
	}
	w.s.Admin("PUT", "/v1/products/"+w.gw.ProductKey+"/tsl", string(model), 200)
	w.s.Admin("PUT", "/v1/products/"+w.subs[0].ProductKey+"/tsl", string(model), 200)
	g := w.open(t, filepath.Join(t.TempDir(), "gateway.json"), make(chan device.SubKey, 10), make(chan error, 10))
	defer g.Close()
	ctx := context.Background()
	if err := g.SubDeviceOnline(ctx, w.subs[0]); err != nil {
		t.Fatal(err)
	}
	if err := g.PackPost(ctx, map[string]any{"Temperature": 30.5}, map[device.SubKey]map[string]any{w.subs[0].Key(): {"Temperature": 19.5}}); err != nil {
		t.Fatalf("pack post: %v", err)
	}
	for _, c := range []struct {
		d    device.Triple
		want string
	}{{w.gw, "30.5"}, {w.subs[0], "19.5"}} {
		var props struct {
			Properties []struct {
				Identifier string
				Value      json.RawMessage
			}
		}
		w.s.Admin("GET", "/v1/products/"+c.d.ProductKey+"/devices/"+c.d.DeviceName+"/properties", nil, 200).JSON(t, &props)
		if len(props.Properties) != 1 || string(props.Properties[0].Value) != c.want {
			t.Fatalf("%s after the pack post: %+v, want Temperature %s", c.d.DeviceName, props.Properties, c.want)
		}
	}
	err = g.PackPost(ctx, nil, map[device.SubKey]map[string]any{w.subs[1].Key(): {"Temperature": 1}})
	if !errors.Is(err, device.ErrPlatform) {
		t.Fatalf("a sub-device not logged in: %v; want ErrPlatform", err)
	}
}

// TestGatewayHearsSubDeviceLifecycle: an operator disabling, enabling and
// deleting a sub-device reaches the gateway helper as thing.disable /
// enable / delete, which it acknowledges; the deleted one leaves its lists.
func TestGatewayHearsSubDeviceLifecycle(t *testing.T) {
	w := newWorld(t, 1)
	events := make(chan string, 10)
	deleted := make(chan device.SubKey, 10)
	g, err := device.NewGateway(context.Background(), device.GatewayOptions{
		Options:        device.Options{Broker: "tcp://" + w.s.App.Broker().Addr("tcp"), Triple: w.gw},
		StateFile:      filepath.Join(t.TempDir(), "gateway.json"),
		OnSubDeleted:   func(k device.SubKey) { deleted <- k },
		OnSubLifecycle: func(k device.SubKey, what device.SubLifecycle) { events <- k.DeviceName + " " + string(what) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	sub := w.subs[0]
	if err := g.SubDeviceOnline(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	next := func(want string) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("lifecycle event %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %q", want)
		}
	}
	path := "/v1/products/" + sub.ProductKey + "/devices/" + sub.DeviceName
	w.s.Admin("POST", path+":disable", nil, 200)
	next(sub.DeviceName + " disable")
	if g.LoggedIn(sub.Key()) {
		t.Fatal("a disabled sub-device is still logged in on the gateway")
	}
	w.s.Admin("POST", path+":enable", nil, 200)
	next(sub.DeviceName + " enable")
	w.s.Admin("DELETE", path, nil, 204)
	next(sub.DeviceName + " delete")
	select {
	case k := <-deleted:
		if k != sub.Key() {
			t.Fatalf("deleted %v", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnSubDeleted not told")
	}
	for _, k := range g.Local() {
		if k == sub.Key() {
			t.Fatal("the deleted sub-device is still in the local topology")
		}
	}
}

// TestGatewayDiscoveryAndPermits: the helper reports found sub-devices
// (listed for an operator), hears add-notify and permit requests, and
// unregisters sub-devices with a result per device.
func TestGatewayDiscoveryAndPermits(t *testing.T) {
	w := newWorld(t, 2)
	notified := make(chan []device.SubKey, 1)
	permits := make(chan string, 1)
	g, err := device.NewGateway(context.Background(), device.GatewayOptions{
		Options:     device.Options{Broker: "tcp://" + w.s.App.Broker().Addr("tcp"), Triple: w.gw},
		StateFile:   filepath.Join(t.TempDir(), "gateway.json"),
		OnAddNotify: func(ks []device.SubKey) { notified <- ks },
		OnPermit:    func(pk string, d time.Duration) { permits <- pk + " " + d.String() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx := context.Background()
	gwPath := "/v1/products/" + w.gw.ProductKey + "/devices/" + w.gw.DeviceName
	if err := g.ReportFound(ctx, []device.SubKey{w.subs[1].Key()}); err != nil {
		t.Fatalf("ReportFound: %v", err)
	}
	var found struct{ Found []device.SubKey }
	w.s.Admin("GET", gwPath+"/found", nil, 200).JSON(t, &found)
	if len(found.Found) != 1 || found.Found[0] != w.subs[1].Key() {
		t.Fatalf("found list: %+v", found)
	}
	w.s.Admin("POST", gwPath+"/subdevices:notify-add", map[string]any{"subdevices": []device.SubKey{w.subs[0].Key()}}, 200)
	select {
	case ks := <-notified:
		if len(ks) != 1 || ks[0] != w.subs[0].Key() {
			t.Fatalf("add-notify: %v", ks)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no add-notify")
	}
	w.s.Admin("POST", gwPath+"/subdevices:permit", map[string]any{"productKey": w.subs[0].ProductKey, "time": 60}, 200)
	select {
	case p := <-permits:
		if p != w.subs[0].ProductKey+" 1m0s" {
			t.Fatalf("permit: %s", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no permit")
	}
	if err := g.SubDeviceOnline(ctx, w.subs[0]); err != nil {
		t.Fatal(err)
	}
	res, err := g.Unregister(ctx, []device.SubKey{w.subs[0].Key(), w.subs[1].Key()})
	if err != nil || len(res) != 2 || res[0].Code != 200 || res[1].Code != 6401 {
		t.Fatalf("Unregister: %+v %v; want 200 for the proxied one, 6401 for the other", res, err)
	}
	if len(g.Local()) != 0 {
		t.Fatalf("local topology after unregistering: %v", g.Local())
	}
}

package device

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/credential"
)

// Gateway implements the platform's recommended gateway logic on top of a
// gateway's connection, so gateway makers do not write it by hand:
//
//   - the local topology list (sub-devices reported as proxied, with their
//     credentials), persisted;
//   - the list of connected sub-devices (present on the gateway's access
//     network), in memory;
//   - the list of sub-devices deleted while the gateway was offline,
//     persisted.
//
// On every (re)connect it pulls the cloud topology, drops sub-devices
// deleted in the cloud, adds connected sub-devices that are not yet
// proxied, logs in the connected ones and sends the pending deletes. It
// also handles thing.topo.change pushed by the platform.
type Gateway struct {
	o     GatewayOptions
	c     *Client
	gw    Triple
	synMu sync.Mutex // one sync at a time

	mu        sync.Mutex
	local     map[SubKey]Triple // LocalTopoList
	connected map[SubKey]Triple // LocalDevList
	removed   map[SubKey]bool   // RemovedDevList
	loggedIn  map[SubKey]bool
	online    bool
	connects  int // connections made so far
}

// SubKey names a sub-device.
type SubKey struct {
	ProductKey string `json:"productKey"`
	DeviceName string `json:"deviceName"`
}

// Key returns a triple's SubKey.
func (t Triple) Key() SubKey { return SubKey{t.ProductKey, t.DeviceName} }

// GatewayOptions configure a Gateway.
type GatewayOptions struct {
	Options // the gateway's own connection
	// StateFile persists the local topology and the deleted-while-offline
	// lists; it is written atomically.
	StateFile string
	// OnSubDeleted is told when the platform deleted a sub-device (remove
	// it from the access network).
	OnSubDeleted func(SubKey)
	// OnSubMessage receives messages the platform sends to a logged-in
	// sub-device.
	OnSubMessage func(sub SubKey, m Message)
	// OnSubLifecycle is told when an operator disabled, enabled or
	// deleted a sub-device (thing.disable / enable / delete, already
	// acknowledged; a deleted one has left the lists, and OnSubDeleted is
	// told too).
	OnSubLifecycle func(sub SubKey, what SubLifecycle)
	// OnAddNotify is told when an operator asks the gateway to add
	// sub-devices (thing.topo.add.notify, already acknowledged); the
	// helper itself proxies and logs in the listed ones it has connected.
	OnAddNotify func(subs []SubKey)
	// OnPermit is told when the platform lets the gateway add devices of a
	// product for a while (thing.gateway.permit, already acknowledged).
	OnPermit func(productKey string, d time.Duration)
	// OnSynced is told after each (re)connect sync, with its error.
	OnSynced func(error)
}

type gwState struct {
	Topology []Triple `json:"topology"`
	Removed  []SubKey `json:"removed"`
}

// NewGateway loads the persisted lists, connects the gateway and syncs.
func NewGateway(ctx context.Context, o GatewayOptions) (*Gateway, error) {
	// As stock Link SDK gateways do: the platform subscribes the gateway's
	// downlinks, and each sub-device's as it logs in (clientId _ss=1,gw=1).
	o.gateway, o.ServerSubscribe = true, true
	g := &Gateway{o: o, gw: o.Triple, local: map[SubKey]Triple{}, connected: map[SubKey]Triple{}, removed: map[SubKey]bool{},
		loggedIn: map[SubKey]bool{}}
	if err := g.load(); err != nil {
		return nil, err
	}
	user := o.OnConnectionChange
	o.Options.OnConnectionChange = func(up bool, err error) {
		g.mu.Lock()
		g.online = up
		if !up {
			g.loggedIn = map[SubKey]bool{} // the platform logged them out with us
		}
		if up {
			g.connects++
		}
		again := up && g.connects > 1
		g.mu.Unlock()
		// The first connect is synced by NewGateway once its subscriptions
		// are in place; paho may report it only after Connect has returned,
		// so count connections rather than asking whether NewGateway is done.
		if again {
			go g.syncAfterConnect()
		}
		if user != nil {
			user(up, err)
		}
	}
	c, err := Connect(ctx, o.Options)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.c = c
	g.mu.Unlock()
	for _, f := range []string{"/sys/" + g.gw.ProductKey + "/" + g.gw.DeviceName + "/#", "/ext/session/" + g.gw.ProductKey + "/" + g.gw.DeviceName + "/#"} {
		if err := c.listen(ctx, f, 1, g.onMessage); err != nil {
			c.Close()
			return nil, err
		}
	}
	g.mu.Lock()
	g.online = true
	g.mu.Unlock()
	if err := g.Sync(ctx); err != nil {
		return g, fmt.Errorf("first sync: %w", err)
	}
	return g, nil
}

// Close disconnects the gateway; the lists stay usable offline (a
// sub-device deleted now is told to the platform at the next connect).
func (g *Gateway) Close() {
	g.mu.Lock()
	g.online = false
	g.loggedIn = map[SubKey]bool{}
	g.mu.Unlock()
	g.c.Close()
}

// Client is the gateway's own connection.
func (g *Gateway) Client() *Client { return g.c }

func (g *Gateway) load() error {
	if g.o.StateFile == "" {
		return nil
	}
	data, err := os.ReadFile(g.o.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading gateway state: %w", err)
	}
	var st gwState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("gateway state file %s is corrupt: %w", g.o.StateFile, err)
	}
	for _, t := range st.Topology {
		g.local[t.Key()] = t
	}
	for _, k := range st.Removed {
		g.removed[k] = true
	}
	return nil
}

// save persists the lists; call with g.mu held.
func (g *Gateway) save() error {
	if g.o.StateFile == "" {
		return nil
	}
	st := gwState{Topology: []Triple{}, Removed: []SubKey{}}
	for _, t := range g.local {
		st.Topology = append(st.Topology, t)
	}
	for k := range g.removed {
		st.Removed = append(st.Removed, k)
	}
	sort.Slice(st.Topology, func(i, j int) bool { return st.Topology[i].DeviceName < st.Topology[j].DeviceName })
	sort.Slice(st.Removed, func(i, j int) bool { return st.Removed[i].DeviceName < st.Removed[j].DeviceName })
	data, _ := json.MarshalIndent(st, "", "  ")
	return credential.WriteFileAtomic(g.o.StateFile, data, 0o600)
}

// Local returns the local topology list.
func (g *Gateway) Local() []SubKey {
	g.mu.Lock()
	defer g.mu.Unlock()
	return sortedKeys(g.local)
}

// Removed returns the sub-devices deleted while offline, not yet told.
func (g *Gateway) Removed() []SubKey {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]SubKey, 0, len(g.removed))
	for k := range g.removed {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DeviceName < out[j].DeviceName })
	return out
}

// LoggedIn reports whether a sub-device is logged in on the platform.
func (g *Gateway) LoggedIn(k SubKey) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.loggedIn[k]
}

func sortedKeys[V any](m map[SubKey]V) []SubKey {
	out := make([]SubKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ProductKey != out[j].ProductKey {
			return out[i].ProductKey < out[j].ProductKey
		}
		return out[i].DeviceName < out[j].DeviceName
	})
	return out
}

// --- requests to the platform ---

// call sends a request on the gateway's /sys/ or /ext/session/ topic.
func (g *Gateway) call(ctx context.Context, kind, rest string, params any) (Reply, error) {
	prefix := "/sys/"
	if kind == "session" {
		prefix = "/ext/session/"
	}
	topic := prefix + g.gw.ProductKey + "/" + g.gw.DeviceName + "/" + rest
	return g.c.call(ctx, topic, strings.ReplaceAll(rest, "/", "."), params)
}

func (g *Gateway) onMessage(m Message) {
	if strings.HasSuffix(m.Topic, "_reply") {
		g.c.onReply(m)
		return
	}
	prefix := "/sys/" + g.gw.ProductKey + "/" + g.gw.DeviceName + "/thing/"
	switch strings.TrimPrefix(m.Topic, prefix) {
	case "topo/change":
		g.onTopoChange(m.Payload)
	case "topo/add/notify":
		g.onAddNotify(m)
	case "gateway/permit":
		g.onPermit(m)
	}
}

// ack answers a platform request on its topic's _reply, as the Link SDK
// does.
func (g *Gateway) ack(m Message) json.RawMessage {
	var req struct {
		ID     json.RawMessage `json:"id"`
		Params json.RawMessage `json:"params"`
	}
	if json.Unmarshal(m.Payload, &req) != nil {
		return nil
	}
	if len(req.ID) > 0 {
		body, _ := json.Marshal(map[string]any{"id": req.ID, "code": 200, "data": map[string]any{}})
		g.c.mc.Publish(m.Topic+"_reply", 0, false, body)
	}
	return req.Params
}

// onAddNotify handles thing.topo.add.notify: the listed sub-devices that
// are connected here are proxied and logged in.
func (g *Gateway) onAddNotify(m Message) {
	var subs []SubKey
	if json.Unmarshal(g.ack(m), &subs) != nil {
		return
	}
	var ts []Triple
	g.mu.Lock()
	for _, k := range subs {
		if t, ok := g.connected[k]; ok {
			ts = append(ts, t)
		}
	}
	g.mu.Unlock()
	if len(ts) > 0 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			g.SubDeviceOnlineBatch(ctx, ts)
		}()
	}
	if g.o.OnAddNotify != nil {
		g.o.OnAddNotify(subs)
	}
}

// onPermit handles thing.gateway.permit.
func (g *Gateway) onPermit(m Message) {
	var p struct {
		ProductKey string `json:"productKey"`
		Time       int64  `json:"time"`
	}
	if json.Unmarshal(g.ack(m), &p) != nil {
		return
	}
	if g.o.OnPermit != nil {
		g.o.OnPermit(p.ProductKey, time.Duration(p.Time)*time.Second)
	}
}

// ReportFound tells the platform of sub-devices discovered on the access
// network (thing.list.found), for an operator to accept.
func (g *Gateway) ReportFound(ctx context.Context, subs []SubKey) error {
	_, err := g.call(ctx, "sys", "thing/list/found", subs)
	return err
}

// SubResult is the platform's answer for one sub-device.
type SubResult struct {
	SubKey
	Code    int    `json:"code"`
	Message string `json:"message,omitempty"`
}

// Unregister deletes sub-devices on the platform (thing.sub.unregister)
// and returns each one's result (200, or the reason it was not deleted);
// the deleted ones leave the local lists.
func (g *Gateway) Unregister(ctx context.Context, subs []SubKey) ([]SubResult, error) {
	r, err := g.call(ctx, "sys", "thing/sub/unregister", subs)
	if err != nil {
		return nil, err
	}
	var out []SubResult
	if err := json.Unmarshal(r.Data, &out); err != nil {
		return nil, fmt.Errorf("thing.sub.unregister answer: %w", err)
	}
	for _, res := range out {
		if res.Code == 200 {
			g.mu.Lock()
			delete(g.local, res.SubKey)
			delete(g.connected, res.SubKey)
			delete(g.loggedIn, res.SubKey)
			g.save()
			g.mu.Unlock()
		}
	}
	return out, nil
}

// onTopoChange handles thing.topo.change: status 1 means the platform
// deleted sub-devices from this gateway.
func (g *Gateway) onTopoChange(payload []byte) {
	var msg struct {
		Params struct {
			Status  int      `json:"status"`
			SubList []SubKey `json:"subList"`
		} `json:"params"`
	}
	if json.Unmarshal(payload, &msg) != nil || msg.Params.Status != 1 {
		return
	}
	for _, k := range msg.Params.SubList {
		g.dropDeletedInCloud(k)
	}
}

func (g *Gateway) dropDeletedInCloud(k SubKey) {
	g.mu.Lock()
	_, had := g.local[k]
	delete(g.local, k)
	delete(g.connected, k)
	delete(g.loggedIn, k)
	err := g.save()
	g.mu.Unlock()
	if had && g.o.OnSubDeleted != nil {
		g.o.OnSubDeleted(k)
	}
	_ = err
}

func subSignParams(t Triple) map[string]string {
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	cid := t.ProductKey + "." + t.DeviceName
	m := hmac.New(sha256.New, []byte(t.DeviceSecret))
	m.Write([]byte(credential.MQTTSignContent(cid, t.DeviceName, t.ProductKey, ts)))
	return map[string]string{"productKey": t.ProductKey, "deviceName": t.DeviceName, "clientId": cid, "timestamp": ts,
		"signmethod": "hmacSha256", "sign": hex.EncodeToString(m.Sum(nil)), "cleanSession": "true"}
}

// topoAdd proxies sub-devices, 30 a call, and adds them to the local list.
func (g *Gateway) topoAdd(ctx context.Context, subs []Triple) error {
	for i := 0; i < len(subs); i += 30 {
		chunk := subs[i:min(i+30, len(subs))]
		params := make([]map[string]string, len(chunk))
		for j, t := range chunk {
			params[j] = subSignParams(t)
		}
		if _, err := g.call(ctx, "sys", "thing/topo/add", params); err != nil {
			return err
		}
		g.mu.Lock()
		for _, t := range chunk {
			g.local[t.Key()] = t
		}
		err := g.save()
		g.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// login logs sub-devices in, 50 a call, and subscribes to their downstream topics.
func (g *Gateway) login(ctx context.Context, subs []Triple) error {
	for i := 0; i < len(subs); i += 50 {
		chunk := subs[i:min(i+50, len(subs))]
		list := make([]map[string]string, len(chunk))
		for j, t := range chunk {
			list[j] = subSignParams(t)
		}
		if _, err := g.call(ctx, "session", "combine/batch_login", map[string]any{"deviceList": list}); err != nil {
			return err
		}
		g.mu.Lock()
		for _, t := range chunk {
			g.loggedIn[t.Key()] = true
		}
		g.mu.Unlock()
		for _, t := range chunk {
			g.subscribeSub(ctx, t.Key())
		}
	}
	return nil
}

func (g *Gateway) subscribeSub(ctx context.Context, k SubKey) {
	h := func(_ paho.Client, m paho.Message) {
		msg := Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos()}
		g.onSubLifecycle(k, msg)
		if g.o.OnSubMessage != nil {
			g.o.OnSubMessage(k, msg)
		}
	}
	// With ServerSubscribe the platform added the sub-device's system
	// downlinks to this session at login: they are routed locally. The
	// subscriptions are not restored by the client after a reconnect: the
	// sync logs the sub-device in again and comes back here.
	sys := "/sys/" + k.ProductKey + "/" + k.DeviceName + "/#"
	if g.c.o.ServerSubscribe {
		g.c.mc.AddRoute(sys, h)
	} else {
		wait(ctx, g.c.mc.Subscribe(sys, 1, h))
	}
	if g.o.OnSubMessage != nil {
		wait(ctx, g.c.mc.Subscribe("/"+k.ProductKey+"/"+k.DeviceName+"/user/#", 1, h))
	}
}

// SubLifecycle is what the platform told a gateway about a sub-device:
// "disable", "enable" or "delete".
type SubLifecycle string

// onSubLifecycle handles thing.disable / enable / delete on a
// sub-device's topic: a deleted sub-device leaves the local lists, a
// disabled one is logged out (the platform has closed its session), and
// each is acknowledged as the Link SDK does, then told to OnSubLifecycle.
func (g *Gateway) onSubLifecycle(k SubKey, m Message) {
	prefix := "/sys/" + k.ProductKey + "/" + k.DeviceName + "/thing/"
	what, ok := strings.CutPrefix(m.Topic, prefix)
	if !ok || (what != "disable" && what != "enable" && what != "delete") {
		return
	}
	var req struct {
		ID json.RawMessage `json:"id"`
	}
	json.Unmarshal(m.Payload, &req)
	switch what {
	case "delete":
		g.dropDeletedInCloud(k)
	case "disable":
		g.mu.Lock()
		delete(g.loggedIn, k)
		g.mu.Unlock()
	}
	if len(req.ID) > 0 {
		body, _ := json.Marshal(map[string]any{"id": req.ID, "code": 200, "data": map[string]any{}})
		g.c.mc.Publish(m.Topic+"_reply", 0, false, body)
	}
	if g.o.OnSubLifecycle != nil {
		g.o.OnSubLifecycle(k, SubLifecycle(what))
	}
}

// Sync runs the (re)connect logic: pull the cloud topology, drop
// sub-devices deleted there, send pending deletes, add unproxied connected
// sub-devices, and log in the connected ones.
func (g *Gateway) Sync(ctx context.Context) error {
	g.synMu.Lock()
	defer g.synMu.Unlock()
	r, err := g.call(ctx, "sys", "thing/topo/get", map[string]any{})
	if err != nil {
		return err
	}
	var cloud []SubKey
	if err := json.Unmarshal(r.Data, &cloud); err != nil {
		return fmt.Errorf("topo.get answer: %w", err)
	}
	inCloud := map[SubKey]bool{}
	for _, k := range cloud {
		inCloud[k] = true
	}
	g.mu.Lock()
	var gone []SubKey
	for k := range g.local {
		if !inCloud[k] && !g.removed[k] {
			gone = append(gone, k)
		}
	}
	removed := make([]SubKey, 0, len(g.removed))
	for k := range g.removed {
		removed = append(removed, k)
	}
	g.mu.Unlock()
	for _, k := range gone {
		g.dropDeletedInCloud(k)
	}
	if err := g.sendDeletes(ctx, removed); err != nil {
		return err
	}
	g.mu.Lock()
	var toAdd, toLogin []Triple
	for k, t := range g.connected {
		if _, ok := g.local[k]; !ok {
			toAdd = append(toAdd, t)
		}
		toLogin = append(toLogin, t)
	}
	g.mu.Unlock()
	if err := g.topoAdd(ctx, toAdd); err != nil {
		return err
	}
	err = g.login(ctx, toLogin)
	return err
}

func (g *Gateway) syncAfterConnect() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := g.Sync(ctx)
	if g.o.OnSynced != nil {
		g.o.OnSynced(err)
	}
}

func (g *Gateway) sendDeletes(ctx context.Context, keys []SubKey) error {
	for i := 0; i < len(keys); i += 30 {
		chunk := keys[i:min(i+30, len(keys))]
		if _, err := g.call(ctx, "sys", "thing/topo/delete", chunk); err != nil {
			return err
		}
		g.mu.Lock()
		for _, k := range chunk {
			delete(g.removed, k)
		}
		err := g.save()
		g.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func (g *Gateway) isOnline() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.online
}

// SubDeviceOnline is called when a sub-device appears on the access
// network: it joins the connected list and, if the gateway is online, is
// proxied (if new) and logged in.
func (g *Gateway) SubDeviceOnline(ctx context.Context, t Triple) error {
	g.mu.Lock()
	g.connected[t.Key()] = t
	_, known := g.local[t.Key()]
	g.mu.Unlock()
	if !g.isOnline() {
		return nil
	}
	if !known {
		if err := g.topoAdd(ctx, []Triple{t}); err != nil {
			return err
		}
	}
	return g.login(ctx, []Triple{t})
}

// SubDeviceOnlineBatch is SubDeviceOnline for many sub-devices: proxied 30
// a call, logged in 50 a call.
func (g *Gateway) SubDeviceOnlineBatch(ctx context.Context, ts []Triple) error {
	var add []Triple
	g.mu.Lock()
	for _, t := range ts {
		g.connected[t.Key()] = t
		if _, ok := g.local[t.Key()]; !ok {
			add = append(add, t)
		}
	}
	g.mu.Unlock()
	if !g.isOnline() {
		return nil
	}
	if err := g.topoAdd(ctx, add); err != nil {
		return err
	}
	return g.login(ctx, ts)
}

// SubDeviceOffline is called when a sub-device leaves the access network.
func (g *Gateway) SubDeviceOffline(ctx context.Context, k SubKey) error {
	g.mu.Lock()
	delete(g.connected, k)
	_, known := g.local[k]
	was := g.loggedIn[k]
	delete(g.loggedIn, k)
	g.mu.Unlock()
	if !known || !was || !g.isOnline() {
		return nil
	}
	_, err := g.call(ctx, "session", "combine/logout", k)
	return err
}

// DeleteSubDevice is called when a user deletes a sub-device on the
// gateway: it is remembered as deleted and the platform is told now or at
// the next connect.
func (g *Gateway) DeleteSubDevice(ctx context.Context, k SubKey) error {
	g.mu.Lock()
	delete(g.connected, k)
	delete(g.loggedIn, k)
	_, known := g.local[k]
	if known {
		delete(g.local, k)
		g.removed[k] = true
	}
	err := g.save()
	g.mu.Unlock()
	if err != nil || !known || !g.isOnline() {
		return err
	}
	return g.sendDeletes(ctx, []SubKey{k})
}

// PublishFor publishes for a logged-in sub-device on its topic
// /sys/{pk}/{dn}/{rest} (or a custom topic when rest starts with "user/",
// /{pk}/{dn}/user/…).
func (g *Gateway) PublishFor(ctx context.Context, k SubKey, rest string, qos byte, payload []byte) error {
	topic := "/sys/" + k.ProductKey + "/" + k.DeviceName + "/" + rest
	if strings.HasPrefix(rest, "user/") {
		topic = "/" + k.ProductKey + "/" + k.DeviceName + "/" + rest
	}
	return g.c.Publish(ctx, topic, qos, payload)
}

// TopoGet returns the platform's topology of this gateway.
func (g *Gateway) TopoGet(ctx context.Context) ([]SubKey, error) {
	r, err := g.call(ctx, "sys", "thing/topo/get", map[string]any{})
	if err != nil {
		return nil, err
	}
	var out []SubKey
	return out, json.Unmarshal(r.Data, &out)
}

// PackPost reports the gateway's own property values and its logged-in
// sub-devices' in one message (thing.event.property.pack.post). A
// sub-device that is not logged in fails the call (code 520; the
// platform also says so on /ext/error).
func (g *Gateway) PackPost(ctx context.Context, own map[string]any, subs map[SubKey]map[string]any) error {
	type sub struct {
		Identity   SubKey         `json:"identity"`
		Properties map[string]any `json:"properties"`
	}
	params := map[string]any{"properties": own}
	list := make([]sub, 0, len(subs))
	for _, k := range sortedKeys(subs) {
		list = append(list, sub{k, subs[k]})
	}
	params["subDevices"] = list
	_, err := g.call(ctx, "sys", "thing/event/property/pack/post", params)
	return err
}

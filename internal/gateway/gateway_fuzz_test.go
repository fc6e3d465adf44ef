package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
)

// The world of the gateway fuzz test: a gateway with one sub-device in its
// topology, a sub-device it does not hold, one of another account, a
// disabled one, and a direct device.
const (
	fzAccount = "acc1"
	fzGwPK    = "a1GwPK00001"
	fzGwDN    = "gw01"
	fzSubPK   = "a1SubPK0001"
	fzSecret  = "sub-device-secret"
)

var fzDevices = map[string]registry.Device{
	fzGwPK + "/" + fzGwDN:     {AccountID: fzAccount, ProductKey: fzGwPK, DeviceName: fzGwDN, DeviceSecret: "gw-secret"},
	fzSubPK + "/sub01":        {AccountID: fzAccount, ProductKey: fzSubPK, DeviceName: "sub01", DeviceSecret: fzSecret, Gateway: registry.GatewayKey(fzGwPK, fzGwDN)},
	fzSubPK + "/sub02":        {AccountID: fzAccount, ProductKey: fzSubPK, DeviceName: "sub02", DeviceSecret: fzSecret},
	fzSubPK + "/foreign":      {AccountID: "acc2", ProductKey: fzSubPK, DeviceName: "foreign", DeviceSecret: fzSecret, Gateway: registry.GatewayKey(fzGwPK, fzGwDN)},
	fzSubPK + "/off01":        {AccountID: fzAccount, ProductKey: fzSubPK, DeviceName: "off01", DeviceSecret: fzSecret, Status: registry.StatusDisabled, Gateway: registry.GatewayKey(fzGwPK, fzGwDN)},
	"a1Direct001/direct01":    {AccountID: fzAccount, ProductKey: "a1Direct001", DeviceName: "direct01", DeviceSecret: fzSecret},
	fzSubPK + "/" + "aaaaaaa": {AccountID: fzAccount, ProductKey: fzSubPK, DeviceName: "aaaaaaa", DeviceSecret: fzSecret},
}

var fzProducts = map[string]registry.NodeType{fzGwPK: registry.NodeGateway, fzSubPK: registry.NodeSubdevice, "a1Direct001": registry.NodeDirect}

type fzWorld struct {
	mu        sync.Mutex
	published []struct {
		topic   string
		payload []byte
	}
	loggedIn []registry.Device
	attached []registry.Device
	deleted  []string // "pk/dn"
	sent     []fzSent // SendToGateway
	found    []registry.FoundDevice
}

func (w *fzWorld) AddFound(_ context.Context, _ registry.Device, subs [][2]string) error {
	for _, k := range subs {
		w.found = append(w.found, registry.FoundDevice{ProductKey: k[0], DeviceName: k[1]})
	}
	return nil
}
func (w *fzWorld) LookupFound(context.Context, registry.Device) ([]registry.FoundDevice, error) {
	return w.found, nil
}
func (w *fzWorld) RemoveFound(context.Context, registry.Device, [][2]string) error { return nil }

type fzSent struct{ gateway, topic, payload string }

func (w *fzWorld) Online(_, _ string) bool { return true }
func (w *fzWorld) SendToGateway(gwPk, gwDn, topic string, payload []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sent = append(w.sent, fzSent{gwPk + "/" + gwDn, topic, string(payload)})
	return nil
}
func (w *fzWorld) DeleteDevice(_ context.Context, p registry.Principal, pk, dn string) error {
	if d, ok := fzDevices[pk+"/"+dn]; !ok || d.AccountID != p.AccountID {
		return registry.ErrNotFound
	}
	w.deleted = append(w.deleted, pk+"/"+dn)
	return nil
}

func (w *fzWorld) Publish(topic string, payload []byte, _ bool, _ byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.published = append(w.published, struct {
		topic   string
		payload []byte
	}{topic, payload})
	return nil
}
func (w *fzWorld) SubscribeAll(map[string]func(string, []byte)) (func(), error) {
	return func() {}, nil
}
func (w *fzWorld) LoginSub(_, _ string, d registry.Device) error {
	w.loggedIn = append(w.loggedIn, d)
	return nil
}
func (w *fzWorld) LogoutSub(_, _, _, _, _ string) bool { return true }
func (w *fzWorld) SubLoggedIn(_, _, pk, dn string) bool {
	return pk == fzSubPK && dn == "sub01"
}

func (w *fzWorld) MayReceiveCredentials(_, _ string) bool { return true }

func (w *fzWorld) LookupDevice(_ context.Context, pk, dn string) (registry.Device, error) {
	d, ok := fzDevices[pk+"/"+dn]
	if !ok {
		return registry.Device{}, registry.ErrNotFound
	}
	return d, nil
}
func (w *fzWorld) LookupProduct(_ context.Context, pk string) (registry.Product, error) {
	nt, ok := fzProducts[pk]
	if !ok {
		return registry.Product{}, registry.ErrNotFound
	}
	return registry.Product{AccountID: fzAccount, ProductKey: pk, NodeType: nt}, nil
}
func (w *fzWorld) AttachSubdevices(_ context.Context, _ registry.Device, subs []registry.Device) (registry.TopologyChange, error) {
	w.attached = append(w.attached, subs...)
	return registry.TopologyChange{Added: subs}, nil
}
func (w *fzWorld) DetachSubdevices(context.Context, registry.Device, [][2]string) (registry.TopologyChange, error) {
	return registry.TopologyChange{}, nil
}
func (w *fzWorld) Subdevices(context.Context, registry.Device) ([]registry.Device, error) {
	return []registry.Device{fzDevices[fzSubPK+"/sub01"]}, nil
}
func (w *fzWorld) ProxyRegister(_ context.Context, req provision.Request, _ string, _ bool) (provision.Result, error) {
	d, ok := fzDevices[req.ProductKey+"/"+req.DeviceName]
	if !ok {
		return provision.Result{}, &provision.Error{Kind: provision.ErrUnknownDevice, Code: 6100, Reason: "device not found"}
	}
	return provision.Result{Device: d}, nil
}

// fzSigned is a sub-device signing for itself, as the Link SDK does.
func fzSigned(dn, secret string) map[string]string {
	cid, ts := fzSubPK+"."+dn, "1524448722000"
	sign, _ := credential.Sign("hmacsha256", secret, credential.MQTTSignContent(cid, dn, fzSubPK, ts))
	return map[string]string{"productKey": fzSubPK, "deviceName": dn, "clientId": cid, "timestamp": ts, "signmethod": "hmacSha256", "sign": sign}
}

var fzTopics = []string{"thing/topo/add", "thing/topo/delete", "thing/topo/get", "thing/sub/register",
	"thing/proxy/provisioning/product_register", "combine/login", "combine/batch_login", "combine/logout", "combine/batch_logout"}

// FuzzGatewayRequest drives every gateway method with arbitrary payloads.
// A request that asks for a reply gets exactly one, on the request topic's
// _reply, as a four-field Alink object that echoes the request id (whenever one can be read) and whose message repeats at most 64 bytes of the payload; only the
// sub-device in the gateway's topology, signed with its own secret, is
// ever logged in; only enabled sub-devices of the gateway's account are
// added to its topology.
func FuzzGatewayRequest(f *testing.F) {
	enc := func(v any) []byte { b, _ := json.Marshal(v); return b }
	long := strings.Repeat("p", 300)
	seeds := []struct {
		method  uint8
		payload []byte
	}{
		{0, enc(map[string]any{"id": "1", "version": "1.0", "params": []any{fzSigned("sub01", fzSecret)}, "method": "thing.topo.add"})},
		{0, enc(map[string]any{"id": "2", "params": []any{fzSigned("sub02", fzSecret), fzSigned("foreign", fzSecret), fzSigned("off01", fzSecret)}})},
		{0, enc(map[string]any{"id": "3", "params": []any{fzSigned("sub02", "wrong")}})},
		{1, enc(map[string]any{"id": "4", "params": []any{map[string]string{"productKey": fzSubPK, "deviceName": "sub01"}}})},
		{2, []byte(`{"id":"5","version":"1.0","params":{},"method":"thing.topo.get"}`)},
		{3, enc(map[string]any{"id": 6, "params": []any{map[string]string{"productKey": fzSubPK, "deviceName": "sub02"}}})},
		{4, enc(map[string]any{"id": "7", "params": map[string]any{"proxieds": []any{map[string]string{"productKey": fzSubPK, "deviceName": "sub02", "random": "r", "sign": "s"}}}})},
		{5, enc(map[string]any{"id": "8", "params": fzSigned("sub01", fzSecret)})},
		{5, enc(map[string]any{"id": "9", "params": fzSigned("foreign", fzSecret)})},
		{6, enc(map[string]any{"id": "10", "params": map[string]any{"deviceList": []any{fzSigned("sub01", fzSecret), fzSigned("sub02", fzSecret)}}})},
		{7, []byte(`{"id":"11","params":{"productKey":"a1SubPK0001","deviceName":"sub01"}}`)},
		{8, []byte(`{"id":"12","sys":{"ack":0},"params":[{"productKey":"a1SubPK0001","deviceName":"sub01"}]}`)},
		{0, []byte(`{"id":"13","params":[{"productKey":"` + long + `","deviceName":"` + long + `","clientId":"x","sign":"y"}]}`)},
		{5, []byte(`{"id":"14","params":{"productKey":"a1SubPK0001","deviceName":"` + long + `"}}`)},
		{7, []byte(`{"id":"15","params":{"productKey":"` + long + `","deviceName":"sub01"}}`)},
		{3, []byte(`{"id":"16","params":[{"productKey":"` + long + `","deviceName":"x"}]}`)},
		{0, []byte(`{"id":"99","params":"[{\"productKey\":1}]"`)},
		{6, []byte(`not json`)},
		{5, []byte(`{"id":"17","method":"","params":{"productKey":"a1SubPK0001","deviceName":"sub01","clientId":"a1SubPK0001.sub01","timestamp":1524448722000,"signMethod":"HmacSHA256","sign":"` + vecSHA256 + `","cleanSession":true}}`)},
		{6, []byte(`{"id":"18","params":{"signMethod":"hmacSha1","deviceList":[{"productKey":"a1SubPK0001","deviceName":"sub01","clientId":"a1SubPK0001.sub01","timestamp":"1524448722000","sign":"` + vecSHA1 + `"}]}}`)},
	}
	for _, s := range seeds {
		f.Add(s.method, s.payload)
	}
	f.Fuzz(func(t *testing.T, method uint8, payload []byte) {
		w := &fzWorld{}
		s := New(Options{Broker: w, Registry: w, Provisioner: w})
		rest := fzTopics[int(method)%len(fzTopics)]
		prefix := "/sys/"
		if strings.HasPrefix(rest, "combine/") {
			prefix = "/ext/session/"
		}
		topic := prefix + fzGwPK + "/" + fzGwDN + "/" + rest
		s.handle(topic, payload)

		if len(w.published) > 1 {
			t.Fatalf("%d replies", len(w.published))
		}
		if len(w.published) == 1 {
			p := w.published[0]
			if p.topic != topic+"_reply" {
				t.Fatalf("reply on %q", p.topic)
			}
			var rep map[string]json.RawMessage
			if err := json.Unmarshal(p.payload, &rep); err != nil {
				t.Fatalf("reply %q: %v", p.payload, err)
			}
			for _, k := range []string{"id", "code", "data", "message"} {
				if _, ok := rep[k]; !ok {
					t.Fatalf("reply %s lacks %s", p.payload, k)
				}
			}
			var id, msg string
			json.Unmarshal(rep["id"], &id)
			json.Unmarshal(rep["message"], &msg)
			if req, _ := alink.DecodeRequest(payload); id != req.ID {
				t.Fatalf("reply id %q, request id %q", id, req.ID)
			}
			if echoes(msg, payload) {
				t.Fatalf("reply message %q repeats over 64 bytes of the payload", msg)
			}
		}
		for _, d := range w.loggedIn {
			if d.ProductKey != fzSubPK || d.DeviceName != "sub01" {
				t.Fatalf("logged in %s/%s", d.ProductKey, d.DeviceName)
			}
			if !carriesSignature(payload, "sub01") {
				t.Fatalf("logged in sub01 without its signature: %s", payload)
			}
		}
		for _, d := range w.attached {
			if d.AccountID != fzAccount || d.Status == registry.StatusDisabled || fzProducts[d.ProductKey] != registry.NodeSubdevice {
				t.Fatalf("attached %+v", d)
			}
			if !carriesSignature(payload, d.DeviceName) {
				t.Fatalf("attached %s without its signature: %s", d.DeviceName, payload)
			}
		}
	})
}

// carriesSignature reports whether payload holds a valid signature of dn
// (any case of hex): the fuzz seeds' sha256 one, or sub01's vectors.
func carriesSignature(payload []byte, dn string) bool {
	p := strings.ToLower(string(payload))
	if strings.Contains(p, fzSigned(dn, fzSecret)["sign"]) {
		return true
	}
	if dn != "sub01" {
		return false
	}
	for _, v := range []string{vecSHA1, vecMD5, vecNodeSHA} {
		if strings.Contains(p, v) {
			return true
		}
	}
	return false
}

// echoes reports whether msg repeats more than alink.MaxEchoed consecutive bytes
// of in.
func echoes(msg string, in []byte) bool {
	if len(in) > 4096 {
		in = in[:4096]
	}
	// A clipped value may sit between quotes that match the input too.
	for i := 0; i+alink.MaxEchoed+8 < len(in); i++ {
		if strings.Contains(msg, string(in[i:i+alink.MaxEchoed+9])) {
			return true
		}
	}
	return false
}

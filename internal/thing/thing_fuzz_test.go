package thing

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/tsl"
)

const (
	fzPK = "a1Thermo0001"
	fzDN = "therm-01"
)

// fzWorld is the broker and the registry of the fuzz tests.
type fzWorld struct {
	model     *tsl.Model
	published []fzMessage
	saved     [][]registry.PropertyValue
	savedFor  []string
	attrs     map[string]string
	offline   map[string]bool // "pk/dn"
	extRRPC   bool            // sessions asked for v4 RRPC (ext=3)
	// answer, when set, is called with each publish (a device answering).
	answer func(topic string, payload []byte)
}

// SetDeviceAttributes applies the change to w.attrs, checked as the
// registry checks it.
func (w *fzWorld) SetDeviceAttributes(_ context.Context, pk, dn string, set map[string]string, del []string) (registry.Device, error) {
	if pk != fzPK || dn != fzDN {
		return registry.Device{}, registry.ErrNotFound
	}
	next := map[string]string{}
	for k, v := range w.attrs {
		next[k] = v
	}
	for _, k := range del {
		delete(next, k)
	}
	for k, v := range set {
		next[k] = v
	}
	if err := registry.ValidateAttributes("attributes", next); err != nil {
		return registry.Device{}, err
	}
	w.attrs = next
	return registry.Device{ProductKey: pk, DeviceName: dn, Attributes: next}, nil
}

type fzMessage struct {
	topic   string
	payload []byte
}

func (w *fzWorld) Publish(topic string, payload []byte, _ bool, _ byte) error {
	w.published = append(w.published, fzMessage{topic, payload})
	if w.answer != nil {
		w.answer(topic, payload)
	}
	return nil
}
func (w *fzWorld) SubscribeFromClients(string, func(string, []byte)) (func(), error) {
	return func() {}, nil
}
func (w *fzWorld) UsesExtRRPC(string, string) bool { return w.extRRPC }
func (w *fzWorld) SubscribeAll(map[string]func(string, []byte)) (func(), error) {
	return func() {}, nil
}
func (w *fzWorld) Online(pk, dn string) bool                                    { return !w.offline[pk+"/"+dn] }
func (w *fzWorld) LookupThingModel(context.Context, string) (*tsl.Model, error) { return w.model, nil }
func (w *fzWorld) SaveProperties(_ context.Context, pk, dn string, vals []registry.PropertyValue) error {
	w.saved = append(w.saved, vals)
	w.savedFor = append(w.savedFor, pk+"/"+dn)
	return nil
}

// LookupDevice knows the device, a sub-device of it ("sub-01", same
// product) and a device that is nobody's sub-device ("other").
func (w *fzWorld) LookupDevice(_ context.Context, pk, dn string) (registry.Device, error) {
	if pk != fzPK {
		return registry.Device{}, registry.ErrNotFound
	}
	switch dn {
	case fzDN, "other":
		return registry.Device{ProductKey: pk, DeviceName: dn}, nil
	case "sub-01":
		return registry.Device{ProductKey: pk, DeviceName: dn, Gateway: registry.GatewayKey(fzPK, fzDN)}, nil
	}
	return registry.Device{}, registry.ErrNotFound
}

// LatestProperties returns what was saved last for the device.
func (w *fzWorld) LatestProperties(_ context.Context, pk, dn string) ([]registry.PropertyValue, error) {
	by := map[string]registry.PropertyValue{}
	for i, vals := range w.saved {
		if w.savedFor[i] == pk+"/"+dn {
			for _, v := range vals {
				by[v.Identifier] = v
			}
		}
	}
	out := []registry.PropertyValue{}
	for _, v := range by {
		out = append(out, v)
	}
	return out, nil
}

func fzModel(tb testing.TB) *tsl.Model {
	data, err := os.ReadFile("testdata/model.json")
	if err != nil {
		tb.Fatal(err)
	}
	m, err := tsl.Parse(data)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// echoes reports whether msg repeats more than 64 consecutive bytes of in.
func echoes(msg string, in []byte) bool {
	const maxEchoed = 64
	if len(in) > 4096 {
		in = in[:4096]
	}
	// A clipped value may sit between quotes that match the input too.
	for i := 0; i+maxEchoed+8 < len(in); i++ {
		if strings.Contains(msg, string(in[i:i+maxEchoed+9])) {
			return true
		}
	}
	return false
}

var fzEvents = []string{"property", "Overheat", "Flood"}

// FuzzThingPost posts arbitrary payloads as property and event posts. A
// post that asks for a reply gets exactly one four-field reply on _reply;
// properties are stored only when the reply is 200, and then every stored
// value passes the model; a refusal's message and identifier repeat at
// most 64 bytes of the payload.
func FuzzThingPost(f *testing.F) {
	for _, s := range []struct {
		event   uint8
		payload string
	}{
		{0, `{"id":"1","version":"1.0","params":{"Temperature":23.5,"FanLevel":3,"PowerSwitch":1,"Mode":2,"Label":"kitchen"},"method":"thing.event.property.post"}`},
		{0, `{"id":"2","params":{"Temperature":{"value":23.5,"time":1524448722000}}}`},
		{0, `{"id":"3","sys":{"ack":0},"params":{"Temperature":500}}`},
		{0, `{"id":"4","params":{"Location":{"Lat":31.2,"Lon":121.4},"History":[1,2,3]}}`},
		{0, `{"id":"5","params":{"` + strings.Repeat("h", 300) + `":1}}`},
		{0, `{"id":"6","params":{"Location":{"` + strings.Repeat("a", 300) + `":1}}}`},
		{1, `{"id":"7","params":{"value":{"Temperature":99},"time":1524448722000}}`},
		{1, `{"id":"8","params":{"Temperature":999}}`},
		{2, `{"id":"9","params":{}}`},
		{0, `{"params":{}}`}, {0, `not json`}, {0, ``},
	} {
		f.Add(s.event, []byte(s.payload))
	}
	model := fzModel(f)
	f.Fuzz(func(t *testing.T, event uint8, payload []byte) {
		w := &fzWorld{model: model}
		s := New(Options{Broker: w, Registry: w, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
		topic := "/sys/" + fzPK + "/" + fzDN + "/thing/event/" + fzEvents[int(event)%len(fzEvents)] + "/post"
		s.onPost(topic, payload)
		if len(w.published) > 1 {
			t.Fatalf("%d replies", len(w.published))
		}
		code := 0
		if len(w.published) == 1 {
			p := w.published[0]
			if p.topic != topic+"_reply" {
				t.Fatalf("reply on %q", p.topic)
			}
			var rep struct {
				ID      *string         `json:"id"`
				Code    *int            `json:"code"`
				Data    json.RawMessage `json:"data"`
				Message *string         `json:"message"`
			}
			if err := json.Unmarshal(p.payload, &rep); err != nil || rep.ID == nil || rep.Code == nil || rep.Message == nil || rep.Data == nil {
				t.Fatalf("reply %s: %v", p.payload, err)
			}
			code = *rep.Code
			if echoes(*rep.Message, payload) || echoes(string(rep.Data), payload) {
				t.Fatalf("reply %s repeats over 64 bytes of the payload", p.payload)
			}
		}
		if len(w.saved) > 0 && code != 200 && len(w.published) == 1 {
			t.Fatalf("stored %v but answered %d", w.saved, code)
		}
		for _, vals := range w.saved {
			for _, v := range vals {
				one, _ := json.Marshal(map[string]json.RawMessage{v.Identifier: v.Value})
				if _, err := model.ValidateProperties(one); err != nil {
					t.Fatalf("stored %s=%s, which the model refuses: %v", v.Identifier, v.Value, err)
				}
			}
		}
	})
}

// FuzzThingReply: a device's answer reaches only a waiter of the same
// device and the same message id.
func FuzzThingReply(f *testing.F) {
	for _, s := range []string{`{"id":"7","code":200,"data":{}}`, `{"id":7,"code":200}`, `{"id":"\"7\"","code":200}`,
		`{"id":"\u0037"}`, `{"id":"8","code":460,"message":"x"}`, `{"code":200}`, `{"id":"7"`, `[]`} {
		f.Add(uint8(0), []byte(s))
		f.Add(uint8(1), []byte(s))
	}
	model := fzModel(f)
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		w := &fzWorld{model: model}
		s := New(Options{Broker: w, Registry: w})
		ch := make(chan Reply, 1)
		s.waiters[fzPK+"/"+fzDN+"/7"] = ch
		dn := fzDN
		if which%2 == 1 {
			dn = "therm-02"
		}
		topics := []string{"/sys/" + fzPK + "/" + dn + "/thing/service/property/set_reply", "/sys/" + fzPK + "/" + dn + "/rrpc/response/7",
			"/sys/" + fzPK + "/" + dn + "/thing/service/Calibrate_reply", "/sys/" + fzPK + "/" + dn + "/thing/service/property/set"}
		s.onReply(topics[int(which/2)%len(topics)], payload)
		select {
		case r := <-ch:
			if dn != fzDN {
				t.Fatalf("answer of %s reached %s's waiter", dn, fzDN)
			}
			var m struct{ ID json.RawMessage }
			json.NewDecoder(strings.NewReader(string(payload))).Decode(&m)
			if id, _ := alink.ParseID(m.ID); r.ID != "7" || id != "7" {
				t.Fatalf("answer with id %s delivered to waiter 7", m.ID)
			}
			if len(r.Data) > 0 && !json.Valid(r.Data) {
				t.Fatalf("data %q", r.Data)
			}
		default:
		}
	})
}

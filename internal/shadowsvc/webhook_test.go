package shadowsvc_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadowsvc"
)

type posts struct {
	mu  sync.Mutex
	got map[string][]shadowsvc.Event
}

func (p *posts) Post(url string, v any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got[url] = append(p.got[url], v.(shadowsvc.Event))
}

func TestWebhooks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	urls := []string{"https://a.example/hook", "https://b.example/hook"}
	pv := registry.Provisioning{EventURLs: urls}
	if _, err := e.reg.UpdateProduct(ctx, operator, e.pk, registry.ProductPatch{Provisioning: &pv}); err != nil {
		t.Fatal(err)
	}
	p := &posts{got: map[string][]shadowsvc.Event{}}
	e.svc.AddObserver(&shadowsvc.Webhooks{Products: e.reg, Poster: p})
	k := e.key("dev1", "cfg")
	mustUpdate(t, e, k, `{"state":{"desired":{"on":true}}}`)
	mustUpdate(t, e, k, `{"state":{"reported":{"on":true}}}`)
	if _, err := e.svc.DeleteAWS(ctx, k, "", web); err != nil {
		t.Fatal(err)
	}
	for _, u := range urls {
		evs := p.got[u]
		if len(evs) != 3 {
			t.Fatalf("%s got %d events", u, len(evs))
		}
		want := []struct {
			event     string
			prev, cur int64
		}{{"shadow.updated", 0, 1}, {"shadow.updated", 1, 2}, {"shadow.deleted", 2, 2}}
		for i, w := range want {
			ev := evs[i]
			if ev.Event != w.event || ev.PreviousVersion != w.prev || ev.Version != w.cur || ev.ShadowName != "cfg" ||
				ev.DeviceName != "dev1" || ev.ThingName != e.pk+".dev1" || ev.Source != "rest" {
				t.Fatalf("event %d = %+v", i, ev)
			}
		}
		var cur struct {
			State struct {
				Reported map[string]any `json:"reported"`
			} `json:"state"`
		}
		if err := json.Unmarshal(evs[1].Current, &cur); err != nil || cur.State.Reported["on"] != true {
			t.Fatalf("current = %s", evs[1].Current)
		}
	}
	// New URLs apply to the next change at once (the cache is dropped by
	// the product event).
	pv.EventURLs = []string{"https://c.example/hook"}
	if _, err := e.reg.UpdateProduct(ctx, operator, e.pk, registry.ProductPatch{Provisioning: &pv}); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, e, k, `{"state":{"reported":{"on":false}}}`)
	if len(p.got[urls[0]]) != 3 || len(p.got["https://c.example/hook"]) != 1 {
		t.Fatalf("after the URLs changed: %d to the old, %d to the new", len(p.got[urls[0]]), len(p.got["https://c.example/hook"]))
	}
}

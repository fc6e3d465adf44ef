package shadowsvc

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/corral-iot/corral/internal/cache"
	"github.com/corral-iot/corral/internal/registry"
)

// Poster queues an event for asynchronous delivery (webhook.Client).
type Poster interface {
	Post(url string, v any)
}

// Products reads a product for its event URLs.
type Products interface {
	LookupProduct(ctx context.Context, pk string) (registry.Product, error)
}

// Webhooks posts every accepted change to its product's event URLs (the
// URLs registration events go to, registry.Provisioning.EventURLs). The
// URLs are cached a while; a Service it observes passes product events on
// (see Service.ProductChanged), which drop them at once.
type Webhooks struct {
	Products Products
	Poster   Poster
	Log      *slog.Logger

	once sync.Once
	urls *cache.Cache[string, []string] // event URLs by ProductKey
}

func (w *Webhooks) cache() *cache.Cache[string, []string] {
	w.once.Do(func() { w.urls = cache.New[string, []string](cache.Options{TTL: settingsTTL, MaxSize: 10_000}) })
	return w.urls
}

// ProductChanged implements registry.ProductObserver: drops the product's
// cached URLs.
func (w *Webhooks) ProductChanged(_ context.Context, _ registry.ProductEventKind, pk string) {
	w.cache().Delete(pk)
}

// Event is the body of a shadow webhook (and of the MQTT event topic
// $corral/events/shadow/{pk}/{dn}[/{name}]).
type Event struct {
	Event      string `json:"event"` // "shadow.updated" or "shadow.deleted"
	ProductKey string `json:"productKey"`
	DeviceName string `json:"deviceName"`
	ThingName  string `json:"thingName"`
	ShadowName string `json:"shadowName,omitempty"` // "" for the classic shadow
	Source     string `json:"source"`               // "aws", "alibaba", "rest", "presence"
	FromDevice bool   `json:"fromDevice"`
	// PreviousVersion is 0 when the change created the shadow.
	PreviousVersion int64           `json:"previousVersion"`
	Version         int64           `json:"version"`
	Previous        json.RawMessage `json:"previous"`  // {state, metadata, version}
	Current         json.RawMessage `json:"current"`   // the deleted document on a delete
	Timestamp       int64           `json:"timestamp"` // epoch seconds
}

// NewEvent is the event of a change.
func NewEvent(c Change) Event {
	ev := Event{Event: "shadow.updated", ProductKey: c.Key.ProductKey, DeviceName: c.Key.DeviceName, ThingName: c.Thing,
		ShadowName: c.Key.Name, Source: c.Source, FromDevice: c.FromDevice, PreviousVersion: c.Prev.Version,
		Version: c.Cur.Version, Timestamp: c.At.Unix()}
	if c.Created {
		ev.PreviousVersion = 0
	}
	if c.Deleted {
		ev.Event = "shadow.deleted"
	}
	ev.Previous, ev.Current = c.PrevStored, c.CurStored
	if ev.Previous == nil {
		ev.Previous, _ = c.Prev.MarshalJSON()
	}
	if ev.Current == nil {
		ev.Current, _ = c.Cur.MarshalJSON()
	}
	return ev
}

// ShadowChanged implements Observer.
func (w *Webhooks) ShadowChanged(ctx context.Context, c Change) {
	urls, err := w.cache().GetOrLoad(c.Key.ProductKey, func() ([]string, error) {
		p, err := w.Products.LookupProduct(ctx, c.Key.ProductKey)
		return p.Provisioning.EventURLs, err
	})
	if err != nil {
		if w.Log != nil {
			w.Log.Warn("shadow event: reading product", "productKey", c.Key.ProductKey, "err", err)
		}
		return
	}
	if len(urls) == 0 {
		return
	}
	ev := NewEvent(c)
	for _, u := range urls {
		w.Poster.Post(u, ev)
	}
}

package shadowsvc

import (
	"context"
	"encoding/json"
	"log/slog"

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
// URLs registration events go to, registry.Provisioning.EventURLs).
type Webhooks struct {
	Products Products
	Poster   Poster
	Log      *slog.Logger
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
	ev.Previous, _ = c.Prev.MarshalJSON()
	ev.Current, _ = c.Cur.MarshalJSON()
	return ev
}

// ShadowChanged implements Observer.
func (w *Webhooks) ShadowChanged(ctx context.Context, c Change) {
	p, err := w.Products.LookupProduct(ctx, c.Key.ProductKey)
	if err != nil {
		if w.Log != nil {
			w.Log.Warn("shadow event: reading product", "productKey", c.Key.ProductKey, "err", err)
		}
		return
	}
	if len(p.Provisioning.EventURLs) == 0 {
		return
	}
	ev := NewEvent(c)
	for _, u := range p.Provisioning.EventURLs {
		w.Poster.Post(u, ev)
	}
}

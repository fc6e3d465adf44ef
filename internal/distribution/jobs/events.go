package jobs

import (
	"context"
	"encoding/json"

	"github.com/corral-iot/corral/internal/registry"
)

// EventPublisher publishes corral events to the account's applications
// (broker.Broker.PublishEvent).
type EventPublisher interface {
	PublishEvent(topic string, payload []byte)
}

// WebhookPoster queues a signed event for a URL (webhook.Client.Post).
type WebhookPoster interface {
	Post(url string, v any)
}

// ProductLookup reads a product's event URLs (registry.Service).
type ProductLookup interface {
	LookupProduct(ctx context.Context, pk string) (registry.Product, error)
}

// JobEvent is published on $corral/events/distribution/{pk}/job/{jobId}
// when a job is created and when its state changes, and posted to the
// product's event URLs.
type JobEvent struct {
	Event      string `json:"event" doc:"distribution.job"`
	JobID      string `json:"jobId"`
	ProductKey string `json:"productKey"`
	Status     Status `json:"status"`
	State      string `json:"state"`
	Total      int    `json:"total"`
	Moved      int    `json:"moved"`
	Failed     int    `json:"failed"`
	Progress   int    `json:"progress"`
	Timestamp  int64  `json:"timestamp"`
}

// DeviceEvent is published on $corral/events/distribution/{pk}/{dn} when
// a device's move ends (code 200: moved), and posted to the product's
// event URLs.
type DeviceEvent struct {
	Event            string `json:"event" doc:"distribution.device"`
	JobID            string `json:"jobId"`
	ProductKey       string `json:"productKey"`
	DeviceName       string `json:"deviceName"`
	TargetInstanceID string `json:"targetInstanceId,omitempty"`
	Code             int    `json:"code"`
	Message          string `json:"message,omitempty"`
	Timestamp        int64  `json:"timestamp"`
}

// BrokerEvents is the Events of a corral: broker events for applications
// and the product's event webhooks (as registration events are).
type BrokerEvents struct {
	Publisher EventPublisher
	Webhooks  WebhookPoster // nil: none
	Products  ProductLookup
	Now       func() int64 // milliseconds
}

func (e BrokerEvents) send(ctx context.Context, pk, topic string, v any) {
	data, _ := json.Marshal(v)
	e.Publisher.PublishEvent(topic, data)
	if e.Webhooks == nil {
		return
	}
	if p, err := e.Products.LookupProduct(ctx, pk); err == nil {
		for _, u := range p.Provisioning.EventURLs {
			e.Webhooks.Post(u, v)
		}
	}
}

// JobEvent implements Events.
func (e BrokerEvents) JobEvent(ctx context.Context, j Job) {
	e.send(ctx, j.ProductKey, "$corral/events/distribution/"+j.ProductKey+"/job/"+j.JobID, JobEvent{Event: "distribution.job", JobID: j.JobID,
		ProductKey: j.ProductKey, Status: j.Status, State: j.Status.String(), Total: j.Total, Moved: j.Moved, Failed: j.Failed,
		Progress: j.Progress, Timestamp: e.Now()})
}

// DeviceEvent implements Events.
func (e BrokerEvents) DeviceEvent(ctx context.Context, j Job, it Item) {
	e.send(ctx, j.ProductKey, "$corral/events/distribution/"+j.ProductKey+"/"+it.DeviceName, DeviceEvent{Event: "distribution.device",
		JobID: j.JobID, ProductKey: j.ProductKey, DeviceName: it.DeviceName, TargetInstanceID: it.TargetInstanceID, Code: it.Code,
		Message: it.Message, Timestamp: e.Now()})
}

package shadowsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/cache"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
)

// Broker is what the MQTT side of the shadow service needs of the MQTT
// broker. It is all the service knows of MQTT, so the engine below the
// broker can change (a cluster's routing, say) without touching it.
type Broker interface {
	// SubscribeOrigin subscribes in-process to a filter; h sees every
	// publish on it (clients', wills and corral's own) synchronously, in
	// the publisher's order, with fromDevice set when a device's own
	// session (or its gateway's) published it, not an application or
	// corral. The returned function unsubscribes.
	SubscribeOrigin(filter string, h func(topic string, payload []byte, fromDevice bool)) (func(), error)
	// Publish publishes from corral to every subscriber of topic.
	Publish(topic string, payload []byte, retain bool, qos byte) error
	// PublishEvent publishes on a topic naming its ProductKey
	// ($corral/events/…): only the product's account's applications get it.
	PublishEvent(topic string, payload []byte)
	// Subscribed reports whether a publish on topic now would reach
	// anyone (a client or an in-process subscriber); true when it cannot
	// tell. Payloads no one receives are not built.
	Subscribed(topic string) bool
	// Online reports whether a device has a live session (its own, or
	// through its gateway).
	Online(pk, dn string) bool
}

// presenceSource is a Broker that hands presence events to in-process
// observers as they are (broker.OnPresence), so none is built as JSON
// and decoded again; without it, the MQTT side subscribes to them.
type presenceSource interface {
	OnPresence(f func(registry.Presence)) (stop func())
}

// Things resolves AWS thing names, for topics that name a device by its
// thing: the security issue's {ProductKey}.{DeviceName} or an explicit
// name. Errors wrap registry.ErrNotFound for a name no device has.
type Things interface {
	LookupThing(ctx context.Context, name string) (registry.Device, error)
	LookupDeviceOwner(ctx context.Context, pk, dn string) (registry.Device, error)
}

// MQTTOptions configure the MQTT side.
type MQTTOptions struct {
	Service *Service
	Broker  Broker
	Things  Things
	Log     *slog.Logger
	Now     func() time.Time
	// PresenceWorkers is how many goroutines write presence into
	// shadows (default 8); one device's sessions always go to the same
	// one, in order.
	PresenceWorkers int
}

// MQTT serves shadows over MQTT in both dialects — AWS's
// $aws/things/{thing}/shadow/… and Alibaba's /shadow/update|get/{pk}/{dn}
// — on the Service, and pushes what changed: AWS deltas and documents,
// Alibaba control pushes, $corral/events/shadow/… events. Requests are
// answered in the publisher's own read loop (the answer after the change
// is durable), so one client's requests are handled in order. Presence
// goes into the classic shadow through a few ordered workers.
type MQTT struct {
	svc    *Service
	b      Broker
	things Things
	log    *slog.Logger
	now    func() time.Time
	pres   *presence

	// byThing caches thing name → device and byDevice device → thing
	// name; both are dropped on device renames and deletions
	// (DeviceChanged), the TTL bounds changes made on another node.
	byThing  *cache.Cache[string, deviceRef]
	byDevice *cache.Cache[string, string]

	stop []func()
}

// The sources of changes (Change.Source, Origin.Source).
const (
	sourceAWS      = "aws"
	sourcePresence = "presence"
)

// deviceRef is a device as its shadows name it.
type deviceRef struct{ pk, dn string }

// thingTTL bounds how long a thing name cached here may be stale after a
// rename on another node.
const thingTTL = 5 * time.Second

// NewMQTT returns the MQTT side; Start subscribes it. Register it with
// the Service (AddObserver), the broker (AddSubscribeObserver) and the
// registry (AddObserver) before Start.
func NewMQTT(o MQTTOptions) *MQTT {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PresenceWorkers <= 0 {
		o.PresenceWorkers = 8
	}
	m := &MQTT{svc: o.Service, b: o.Broker, things: o.Things, log: o.Log, now: o.Now,
		byThing:  cache.New[string, deviceRef](cache.Options{TTL: thingTTL, Now: o.Now}),
		byDevice: cache.New[string, string](cache.Options{TTL: thingTTL, Now: o.Now})}
	m.pres = newPresence(m, o.PresenceWorkers)
	return m
}

// Start subscribes to the request topics of both dialects and to
// presence events, and starts the presence workers.
func (m *MQTT) Start() error {
	m.pres.start()
	hs := map[string]func(string, []byte, bool){
		awsClassicRequests: m.onAWS,
		awsNamedRequests:   m.onAWS,
		alibabaRequests:    m.onAlibaba,
	}
	if ps, ok := m.b.(presenceSource); ok {
		m.stop = append(m.stop, ps.OnPresence(m.pres.onPresence))
	} else {
		hs[presenceEvents] = m.pres.onEvent
	}
	for f, h := range hs {
		stop, err := m.b.SubscribeOrigin(f, h)
		if err != nil {
			m.Stop()
			return fmt.Errorf("subscribing shadow topics: %w", err)
		}
		m.stop = append(m.stop, stop)
	}
	return nil
}

// Stop unsubscribes and waits for the presence workers to finish what
// they hold.
func (m *MQTT) Stop() {
	for _, s := range m.stop {
		s()
	}
	m.stop = nil
	m.pres.close()
}

// publish publishes corral's answer or push at QoS 0, as AWS and Alibaba
// publish shadow answers.
func (m *MQTT) publish(topic string, payload []byte) {
	if err := m.b.Publish(topic, payload, false, 0); err != nil {
		m.log.Warn("publishing a shadow message", "err", err)
	}
}

// deviceOfThing resolves a thing name. A default name ({pk}.{dn}: an
// explicit one holds no dot) names its device unless it was renamed, as
// the registry resolves it; it is read from the Service's devices (the
// ones an update reads next, known from presence events), so a device's
// update reads no registry. An explicit name is looked up.
func (m *MQTT) deviceOfThing(ctx context.Context, thing string) (deviceRef, error) {
	if pk, dn, ok := strings.Cut(thing, "."); ok {
		d, err := m.svc.device(ctx, shadow.Key{ProductKey: pk, DeviceName: dn})
		if err == nil && d.ThingName != thing {
			err = registry.ErrNotFound // renamed: its default name is not its name
		}
		if err != nil {
			return deviceRef{}, fmt.Errorf("looking up thing %q: %w", thing, err)
		}
		return deviceRef{pk, dn}, nil
	}
	return m.byThing.GetOrLoad(thing, func() (deviceRef, error) {
		d, err := m.things.LookupThing(ctx, thing)
		if err != nil {
			return deviceRef{}, fmt.Errorf("looking up a thing: %w", err)
		}
		return deviceRef{d.ProductKey, d.DeviceName}, nil
	})
}

// thingOf returns a device's thing name.
func (m *MQTT) thingOf(ctx context.Context, pk, dn string) (string, error) {
	return m.byDevice.GetOrLoad(pk+"/"+dn, func() (string, error) {
		d, err := m.things.LookupDeviceOwner(ctx, pk, dn)
		if err != nil {
			return "", fmt.Errorf("looking up a device: %w", err)
		}
		if d.ThingName == "" {
			return registry.DefaultThingName(pk, dn), nil
		}
		return d.ThingName, nil
	})
}

// DeviceChanged implements registry.Observer: a renamed or deleted
// device's thing names are forgotten at once.
func (m *MQTT) DeviceChanged(_ context.Context, kind registry.DeviceEventKind, d registry.Device) {
	if kind != registry.DeviceRenamed && kind != registry.DeviceDeleted {
		return
	}
	m.byDevice.Delete(d.ProductKey + "/" + d.DeviceName)
	for _, n := range []string{d.ThingName, d.PreviousThingName, registry.DefaultThingName(d.ProductKey, d.DeviceName)} {
		if n != "" {
			m.byThing.Delete(n)
		}
	}
}

// notFound reports whether err means no such device or thing.
func notFound(err error) bool {
	return errors.Is(err, registry.ErrNotFound) || errors.Is(err, shadow.ErrNoShadow)
}

package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Broker is what a Notifier uses of the MQTT broker (broker.Broker).
type Broker interface {
	DeviceAddr(pk, dn string) (netip.Addr, bool)
	Publish(topic string, payload []byte, retain bool, qos byte) error
	SubscribeFromClients(filter string, h func(topic string, payload []byte)) (func(), error)
	Kick(pk, dn, reason string) bool
}

// replyFilter matches every device's answer to thing.bootstrap.notify.
const replyFilter = "/sys/+/+/thing/bootstrap/notify_reply"

// Notifier is the Devices of a job over this corral's broker: it sends
// thing.bootstrap.notify to an online device, waits for its reply on
// notify_reply (or the timeout), then forces it off.
type Notifier struct {
	b       Broker
	timeout time.Duration
	unsub   func()
	seq     atomic.Uint64

	mu      sync.Mutex
	waiting map[string]chan struct{} // guarded by mu: "pk/dn/id" → closed by the reply
}

// NewNotifier returns a Notifier; timeout bounds the wait for a reply
// (default 5 s). Start subscribes to the replies, Close unsubscribes.
func NewNotifier(b Broker, timeout time.Duration) *Notifier {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Notifier{b: b, timeout: timeout, waiting: map[string]chan struct{}{}, unsub: func() {}}
}

// Start listens for replies (once the broker serves).
func (n *Notifier) Start() error {
	unsub, err := n.b.SubscribeFromClients(replyFilter, n.onReply)
	if err != nil {
		return fmt.Errorf("distribution notifier: %w", err)
	}
	n.unsub = unsub
	return nil
}

// Close stops listening for replies.
func (n *Notifier) Close() { n.unsub() }

// Address implements Devices.
func (n *Notifier) Address(pk, dn string) (netip.Addr, bool) { return n.b.DeviceAddr(pk, dn) }

func (n *Notifier) onReply(topic string, payload []byte) {
	// /sys/{pk}/{dn}/thing/bootstrap/notify_reply
	parts := strings.Split(topic, "/")
	if len(parts) != 7 {
		return
	}
	var r struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(payload, &r) != nil {
		return
	}
	key := parts[2] + "/" + parts[3] + "/" + r.ID
	n.mu.Lock()
	ch, ok := n.waiting[key]
	delete(n.waiting, key)
	n.mu.Unlock()
	if ok {
		close(ch)
	}
}

// Notify implements Devices: nil at once for an offline device.
func (n *Notifier) Notify(ctx context.Context, pk, dn string) error {
	if _, online := n.b.DeviceAddr(pk, dn); !online {
		return nil
	}
	id := strconv.FormatUint(n.seq.Add(1), 10)
	key := pk + "/" + dn + "/" + id
	ch := make(chan struct{})
	n.mu.Lock()
	n.waiting[key] = ch
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.waiting, key)
		n.mu.Unlock()
	}()
	msg, _ := json.Marshal(map[string]any{"id": id, "version": "1.0", "method": "thing.bootstrap.notify", "params": map[string]int{"cmd": 0}})
	err := n.b.Publish("/sys/"+pk+"/"+dn+"/thing/bootstrap/notify", msg, false, 0)
	if err == nil {
		t := time.NewTimer(n.timeout)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	// Forced off whether it answered or not: it is refused here already.
	n.b.Kick(pk, dn, "distributed to another instance")
	return err
}

package broker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/corral-iot/corral/internal/mqtt/engine"
)

type metrics struct {
	reg          prometheus.Registerer
	connections  *prometheus.GaugeVec
	authFailures *prometheus.CounterVec
	aclDenied    *prometheus.CounterVec
	in           prometheus.Counter
	dropped      *prometheus.CounterVec
	drops        *prometheus.CounterVec
	authSeconds  prometheus.Histogram
	subSessions  prometheus.Gauge
	pendingCap   prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		reg:          r,
		connections:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "corral_mqtt_connections", Help: "Live authenticated MQTT connections by listener."}, []string{"listener"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_mqtt_auth_failures_total", Help: "Refused MQTT CONNECTs by reason."}, []string{"reason"}),
		aclDenied:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_mqtt_acl_denied_total", Help: "Publishes, subscriptions and wills refused by topic rights."}, []string{"kind"}),
		in:           prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_mqtt_messages_in_total", Help: "PUBLISH packets accepted from clients."}),
		dropped:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_mqtt_messages_dropped_total", Help: "QoS 0 deliveries dropped because the receiving session's queue (mqtt_max_queued, mqtt_max_queued_bytes) was full or the session offline, by QoS (every drop, by reason: corral_mqtt_drops_total)."}, []string{"qos"}),
		drops:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_mqtt_drops_total", Help: "Deliveries dropped by the MQTT engine, by reason: queue_full_qos0 (a queued QoS 0 message evicted for a newer one), queue_full (the queue held only QoS 1/2), offline_qos0, expired (message expiry passed while queued), too_large (above the client's maximum packet size), not_authorized (queued for a session resumed by a client that may not receive it)."}, []string{"reason"}),
		subSessions:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "corral_mqtt_subdevice_sessions", Help: "Sub-devices logged in through gateways."}),
		pendingCap:   prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_mqtt_pending_refused_total", Help: "Connections closed at accept because their address held mqtt_max_pending_per_ip connections without an accepted CONNECT."}),
		authSeconds:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corral_mqtt_auth_duration_seconds", Help: "Time to authenticate a CONNECT.", Buckets: prometheus.ExponentialBuckets(0.00005, 4, 8)}),
	}
	for _, r := range []engine.DropReason{engine.DropQueueFullQoS0, engine.DropQueueFull, engine.DropOfflineQoS0, engine.DropExpired, engine.DropTooLarge, engine.DropNotAuthorized} {
		m.drops.WithLabelValues(r.String())
	}
	if r != nil {
		r.MustRegister(m.connections, m.authFailures, m.aclDenied, m.in, m.dropped, m.drops, m.authSeconds, m.subSessions, m.pendingCap)
	}
	return m
}

// drop counts a delivery the engine dropped (engine.Options.OnDrop).
func (m *metrics) drop(_ string, r engine.DropReason) {
	m.drops.WithLabelValues(r.String()).Inc()
	if r == engine.DropQueueFullQoS0 || r == engine.DropOfflineQoS0 {
		m.dropped.WithLabelValues("0").Inc()
	}
}

// watch exports the engine's own counters.
func (m *metrics) watch(e *engine.Server) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "corral_mqtt_messages_out_total", Help: "PUBLISH packets sent to clients."},
			func() float64 { return float64(e.Stats().Sent) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "corral_mqtt_sessions", Help: "MQTT sessions, offline persistent ones included."},
			func() float64 { return float64(e.Stats().Sessions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "corral_mqtt_connections_parked", Help: "MQTT connections idle past mqtt_park_idle, holding no goroutine."},
			func() float64 { return float64(e.Stats().Parked) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "corral_mqtt_read_buffers", Help: "MQTT connections holding a read buffer (8 KB): busy ones, and those in the middle of a packet."},
			func() float64 { return float64(e.Stats().ReadBuffers) }),
		endsCollector{e})
}

// endsDesc describes the engine's count of ended connections by reason.
var endsDesc = prometheus.NewDesc("corral_mqtt_connection_ends_total",
	"MQTT connections of sessions ended, by reason: normal (DISCONNECT), with_will (DISCONNECT asking for the will), closed (the network connection closed without DISCONNECT), keepalive (nothing received within 1.5 × keep alive), takeover (a new CONNECT with the same client id), protocol_error, kicked (a credential or device disabled, deleted or changed), shutdown, slow_consumer (a write timed out), packet_timeout (a packet begun did not come whole within 30 s).",
	[]string{"reason"}, nil)

// endsCollector exports engine.Stats.Ends, read when scraped.
type endsCollector struct{ e *engine.Server }

func (c endsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- endsDesc }

func (c endsCollector) Collect(ch chan<- prometheus.Metric) {
	for r, n := range c.e.Stats().Ends {
		ch <- prometheus.MustNewConstMetric(endsDesc, prometheus.CounterValue, float64(n), r.String())
	}
}

package broker

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connections  *prometheus.GaugeVec
	authFailures *prometheus.CounterVec
	aclDenied    *prometheus.CounterVec
	in, out      prometheus.Counter
	dropped      *prometheus.CounterVec
	authSeconds  prometheus.Histogram
	subSessions  prometheus.Gauge
	pendingCap   prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		connections:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "corral_mqtt_connections", Help: "Live authenticated MQTT connections by listener."}, []string{"listener"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_mqtt_auth_failures_total", Help: "Refused MQTT CONNECTs by reason."}, []string{"reason"}),
		aclDenied:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_mqtt_acl_denied_total", Help: "Publishes, subscriptions and wills refused by topic rights."}, []string{"kind"}),
		in:           prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_mqtt_messages_in_total", Help: "PUBLISH packets accepted from clients."}),
		out:          prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_mqtt_messages_out_total", Help: "PUBLISH packets sent to clients."}),
		dropped:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_mqtt_messages_dropped_total", Help: "Deliveries dropped because the receiving client's queue (mqtt_max_queued) was full, by the QoS the message was published with."}, []string{"qos"}),
		subSessions:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "corral_mqtt_subdevice_sessions", Help: "Sub-devices logged in through gateways."}),
		pendingCap:   prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_mqtt_pending_refused_total", Help: "Connections closed at accept because their address held mqtt_max_pending_per_ip connections without an accepted CONNECT."}),
		authSeconds:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corral_mqtt_auth_duration_seconds", Help: "Time to authenticate a CONNECT.", Buckets: prometheus.ExponentialBuckets(0.00005, 4, 8)}),
	}
	if r != nil {
		r.MustRegister(m.connections, m.authFailures, m.aclDenied, m.in, m.out, m.dropped, m.authSeconds, m.subSessions, m.pendingCap)
	}
	return m
}

package broker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/corral-iot/corral/internal/mqtt/engine"
)

// TestDropMetrics: every engine drop is counted by reason; the QoS 0 ones
// also in corral_mqtt_messages_dropped_total{qos="0"}.
func TestDropMetrics(t *testing.T) {
	for _, tt := range []struct {
		r    engine.DropReason
		qos0 float64
	}{
		{engine.DropQueueFullQoS0, 1},
		{engine.DropOfflineQoS0, 1},
		{engine.DropQueueFull, 0},
		{engine.DropExpired, 0},
		{engine.DropTooLarge, 0},
	} {
		t.Run(tt.r.String(), func(t *testing.T) {
			m := newMetrics(prometheus.NewRegistry())
			m.drop("c", tt.r)
			if got := testutil.ToFloat64(m.drops.WithLabelValues(tt.r.String())); got != 1 {
				t.Errorf("corral_mqtt_drops_total{reason=%q} = %v, want 1", tt.r, got)
			}
			if got := testutil.ToFloat64(m.dropped.WithLabelValues("0")); got != tt.qos0 {
				t.Errorf(`corral_mqtt_messages_dropped_total{qos="0"} = %v, want %v`, got, tt.qos0)
			}
		})
	}
}

package broker

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestLogFilterRedacts(t *testing.T) {
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect, Remaining: 77},
		Connect: packets.ConnectParams{Username: []byte("user"), Password: []byte("hunter2"), ClientIdentifier: "c1"}}
	publish := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, Payload: []byte("PAYLOAD")}
	tests := []struct {
		name    string
		attrs   []any
		want    string
		notWant []string
	}{
		{"packet value", []any{"pk", connect}, `"pk":{"type":"CONNECT","size":77,"client":"c1"}`, []string{"hunter2", "aHVudGVyMg", "user"}},
		{"packet pointer", []any{"packet", publish}, `"packet":{"type":"PUBLISH","size":7}`, []string{"PAYLOAD", "UEFZTE9BRA"}},
		{"bytes", []any{"data", []byte("PAYLOAD")}, `"data_bytes":7`, []string{"PAYLOAD", "UEFZTE9BRA"}},
		{"secret keys", []any{"password", "hunter2", "Payload", "PAYLOAD", "deviceSecret", "s3"}, `"msg":"m"`, []string{"hunter2", "PAYLOAD", "s3"}},
		{"in a group", []any{slog.Group("g", "pk", connect, "ok", 1)}, `"g":{"pk":{"type":"CONNECT","size":77,"client":"c1"},"ok":1}`, []string{"hunter2"}},
		{"unknown struct", []any{"props", struct{ Password string }{"hunter2"}}, `"props":"(omitted)"`, []string{"hunter2"}},
		{"plain values", []any{"client", "c1", "error", errors.New("boom"), "n", 3}, `"client":"c1","error":"boom","n":3`, nil},
		{"nil error", []any{"error", error(nil)}, `"error":null`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(newLogFilter(slog.NewJSONHandler(&buf, nil), time.Now, 10, 1))
			log.Info("m", tt.attrs...)
			log.With(tt.attrs...).Info("m")
			out := buf.String()
			if !strings.Contains(out, tt.want) {
				t.Errorf("got %s, want it to contain %s", out, tt.want)
			}
			for _, s := range tt.notWant {
				if strings.Contains(out, s) {
					t.Errorf("got %s, which carries %q", out, s)
				}
			}
		})
	}
}

func TestLogFilterRateLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	var buf bytes.Buffer
	log := slog.New(newLogFilter(slog.NewJSONHandler(&buf, nil), func() time.Time { return now }, 3, 0.5))
	lines := func() int { return strings.Count(buf.String(), "\n") }
	for i := 0; i < 10; i++ {
		log.Warn("error processing packet")
	}
	log.Warn("another message")
	if n := lines(); n != 4 {
		t.Fatalf("%d lines after 10 of one message and 1 of another, want 3 + 1:\n%s", n, buf.String())
	}
	now = now.Add(2 * time.Second) // one token back
	log.Warn("error processing packet")
	log.Warn("error processing packet")
	if n := lines(); n != 5 || !strings.Contains(buf.String(), `"suppressed":7`) {
		t.Fatalf("after 2 s: %d lines, want 5 with suppressed 7:\n%s", n, buf.String())
	}
}

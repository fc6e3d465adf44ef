package broker

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// logFilter stands between mochi-mqtt and corral's log. mochi logs whole
// packets when something goes wrong with them (a second CONNECT with its
// password, a refused publish with its payload), so every attribute that
// is a packet becomes its type and size, byte slices become their length,
// and attributes named like credentials or payloads are dropped. Lines
// are rate-limited per message: a token bucket each, and the next line
// let through says how many were suppressed.
type logFilter struct {
	next  slog.Handler
	state *logLimits
}

// logLimits is shared by a filter and the handlers derived from it.
type logLimits struct {
	mu      sync.Mutex
	now     func() time.Time
	burst   float64
	perSec  float64
	buckets map[string]*logBucket
}

type logBucket struct {
	tokens     float64
	at         time.Time
	suppressed int
}

// maxLogBuckets bounds the limiter's memory should messages vary.
const maxLogBuckets = 1024

func newLogFilter(next slog.Handler, now func() time.Time, burst, perSec float64) *logFilter {
	return &logFilter{next: next, state: &logLimits{now: now, burst: burst, perSec: perSec, buckets: map[string]*logBucket{}}}
}

// allow takes a token for msg and returns whether the line may pass and
// how many were suppressed before it.
func (l *logLimits) allow(msg string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[msg]
	if b == nil {
		if len(l.buckets) >= maxLogBuckets {
			clear(l.buckets)
		}
		b = &logBucket{tokens: l.burst, at: now}
		l.buckets[msg] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.perSec)
	b.at = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return true, n
}

func (f *logFilter) Enabled(ctx context.Context, lvl slog.Level) bool {
	return f.next.Enabled(ctx, lvl)
}

func (f *logFilter) Handle(ctx context.Context, r slog.Record) error {
	ok, suppressed := f.state.allow(r.Level.String() + " " + r.Message)
	if !ok {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a, keep := safeAttr(a); keep {
			out.AddAttrs(a)
		}
		return true
	})
	if suppressed > 0 {
		out.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return f.next.Handle(ctx, out)
}

func (f *logFilter) WithAttrs(as []slog.Attr) slog.Handler {
	safe := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a, keep := safeAttr(a); keep {
			safe = append(safe, a)
		}
	}
	return &logFilter{next: f.next.WithAttrs(safe), state: f.state}
}

func (f *logFilter) WithGroup(name string) slog.Handler {
	return &logFilter{next: f.next.WithGroup(name), state: f.state}
}

// secretKeys are attribute names whose values are never logged.
var secretKeys = []string{"password", "secret", "token", "payload", "will"}

// safeAttr rewrites one attribute; keep is false for one to drop.
func safeAttr(a slog.Attr) (slog.Attr, bool) {
	key := strings.ToLower(a.Key)
	for _, s := range secretKeys {
		if strings.Contains(key, s) {
			return a, false
		}
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		var as []any
		for _, g := range v.Group() {
			if g, keep := safeAttr(g); keep {
				as = append(as, g)
			}
		}
		return slog.Group(a.Key, as...), true
	case slog.KindAny:
		switch x := v.Any().(type) {
		case packets.Packet:
			return packetAttr(a.Key, &x), true
		case *packets.Packet:
			return packetAttr(a.Key, x), true
		case []byte:
			return slog.Int(a.Key+"_bytes", len(x)), true
		case nil, error, string, time.Duration, time.Time:
			return slog.Attr{Key: a.Key, Value: v}, true
		case slog.LogValuer:
			return slog.Attr{Key: a.Key, Value: v}, true
		default:
			// Anything else mochi might pass (a struct of the client's
			// properties, say) could hold a credential: name its type only.
			return slog.String(a.Key, "(omitted)"), true
		}
	}
	return slog.Attr{Key: a.Key, Value: v}, true
}

// packetAttr describes a packet by its type and size, never its content.
func packetAttr(key string, pk *packets.Packet) slog.Attr {
	if pk == nil {
		return slog.String(key, "nil")
	}
	name := "UNKNOWN"
	if n, ok := packets.PacketNames[pk.FixedHeader.Type]; ok {
		name = strings.ToUpper(n)
	}
	size := pk.FixedHeader.Remaining
	if size == 0 {
		size = len(pk.Payload)
	}
	client := pk.Origin
	if pk.FixedHeader.Type == packets.Connect {
		client = pk.Connect.ClientIdentifier
	}
	if client == "" {
		return slog.Group(key, slog.String("type", name), slog.Int("size", size))
	}
	return slog.Group(key, slog.String("type", name), slog.Int("size", size), slog.String("client", safeClientID(client)))
}

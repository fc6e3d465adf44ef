package retained

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// model is the brute-force reference: every retained message in a map,
// matched one by one with packet.Match.
type model struct {
	lim  Limits
	msgs map[string]Message
}

func expiredAt(m Message, now time.Time) bool {
	_, _, exp := m.Remaining(now)
	return exp
}

func (md *model) set(m Message) (deleted bool, err error) {
	if len(m.Payload) == 0 {
		_, ok := md.msgs[m.Topic]
		delete(md.msgs, m.Topic)
		return ok, nil
	}
	over := func() bool {
		count := len(md.msgs)
		if _, ok := md.msgs[m.Topic]; !ok {
			count++
		}
		return md.lim.MaxMessages > 0 && count > md.lim.MaxMessages
	}
	if over() {
		md.expire(m.Stored)
		if over() {
			return false, ErrLimit
		}
	}
	md.msgs[m.Topic] = m
	return false, nil
}

func (md *model) expire(now time.Time) int {
	k := 0
	for t, m := range md.msgs {
		if expiredAt(m, now) {
			delete(md.msgs, t)
			k++
		}
	}
	return k
}

// match renders what Match must give: "topic=payload", sorted.
func (md *model) match(filter string, now time.Time) []string {
	var out []string
	for t, m := range md.msgs {
		if packet.Match(filter, t) && !expiredAt(m, now) {
			out = append(out, t+"="+string(m.Payload))
		}
	}
	slices.Sort(out)
	return out
}

func storeMatch(s *Store, filter string, now time.Time) []string {
	var out []string
	s.Match(filter, now, func(m *Message) bool {
		out = append(out, m.Topic+"="+string(m.Payload))
		return true
	})
	slices.Sort(out)
	return out
}

// Levels the generated topics and filters are made of: few, so that topics
// share prefixes and filters hit; empty levels and '$' included; the digits
// give a node more children than a slice holds (kidsMax).
var levels = []string{"a", "b", "", "$s", "ab", "c", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// ops decodes a byte string into operations on a store and the model,
// checking them against each other at every step. The same decoder drives
// the randomized test and the fuzz target.
type ops struct {
	data []byte
}

func (o *ops) next() byte {
	if len(o.data) == 0 {
		return 0
	}
	b := o.data[0]
	o.data = o.data[1:]
	return b
}

func (o *ops) topic() string {
	b := o.next()
	n := 1 + int(b%4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = levels[int(o.next())%len(levels)]
	}
	t := strings.Join(parts, "/")
	if t == "" {
		t = "/" // a topic name has at least one character
	}
	return t
}

func (o *ops) filter() string {
	b := o.next()
	n := 1 + int(b%4)
	parts := make([]string, n)
	for i := range parts {
		switch c := o.next(); {
		case c%16 == 14:
			parts[i] = "+"
		case c%16 == 15 && i == n-1:
			parts[i] = "#"
		default:
			parts[i] = levels[int(c)%len(levels)]
		}
	}
	f := strings.Join(parts, "/")
	if f == "" {
		f = "/"
	}
	return f
}

func run(t *testing.T, data []byte) {
	o := &ops{data: data}
	lim := Limits{MaxMessages: int(o.next() % 8)} // 0: none
	s := NewLimited(lim)
	md := &model{lim: lim, msgs: map[string]Message{}}
	clock := t0
	for step := 0; len(o.data) > 0; step++ {
		switch op := o.next() % 6; op {
		case 0, 1:
			m := Message{Topic: o.topic(), Stored: clock, QoS: o.next() % 3}
			b := o.next()
			if b%3 != 0 {
				m.Payload = []byte(fmt.Sprint(step))
			}
			if e := b / 3 % 4; e != 0 {
				m.Properties.MessageExpiry = u32(uint32(e - 1)) // 0, 1 or 2 s
			}
			gotDel, gotErr := s.Retain(m)
			wantDel, wantErr := md.set(m)
			if gotDel != wantDel || errors.Is(gotErr, ErrLimit) != (wantErr != nil) {
				t.Fatalf("step %d Retain(%q, %q): deleted %v err %v, want %v %v", step, m.Topic, m.Payload, gotDel, gotErr, wantDel, wantErr)
			}
		case 2:
			tp := o.topic()
			_, want := md.msgs[tp]
			delete(md.msgs, tp)
			if got := s.Delete(tp); got != want {
				t.Fatalf("step %d Delete(%q) = %v, want %v", step, tp, got, want)
			}
		case 3:
			f := o.filter()
			now := clock.Add(time.Duration(o.next()%4) * time.Second)
			if got, want := storeMatch(s, f, now), md.match(f, now); !slices.Equal(got, want) {
				t.Fatalf("step %d Match(%q) = %q, want %q", step, f, got, want)
			}
		case 4:
			clock = clock.Add(time.Duration(o.next()%3) * time.Second)
			if got, want := s.Expire(clock), md.expire(clock); got != want {
				t.Fatalf("step %d Expire: %d, want %d", step, got, want)
			}
		case 5:
			tp := o.topic()
			want, wok := md.msgs[tp]
			got, ok := s.Get(tp)
			if ok != wok || ok && (string(got.Payload) != string(want.Payload) || got.QoS != want.QoS || !got.Stored.Equal(want.Stored)) {
				t.Fatalf("step %d Get(%q) = %+v %v, want %+v %v", step, tp, got, ok, want, wok)
			}
		}
		if s.Len() != len(md.msgs) {
			t.Fatalf("step %d: Len %d, want %d", step, s.Len(), len(md.msgs))
		}
		checkTree(t, s)
	}
	// Everything the model holds, through every filter shape at the end.
	for _, f := range []string{"#", "+/#", "$s/#", "+", "+/+", "a/#", "/#"} {
		if got, want := storeMatch(s, f, clock), md.match(f, clock); !slices.Equal(got, want) {
			t.Fatalf("final Match(%q) = %q, want %q", f, got, want)
		}
	}
}

// TestAgainstReference runs random operations against the model.
func TestAgainstReference(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 30
	}
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 13))
		data := make([]byte, 200+r.IntN(1500))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		t.Run(fmt.Sprint(seed), func(t *testing.T) { run(t, data) })
	}
}

// FuzzRetained: the fuzzer's bytes as operations, checked against the model.
func FuzzRetained(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 3, 1, 1, 1, 3, 1, 7, 0})
	f.Add([]byte{2, 0, 1, 0, 0, 1, 1, 0, 2, 3, 0, 1, 0, 0, 1, 2, 0, 3, 3, 7, 7, 7, 7, 0})
	for seed := range 4 {
		r := rand.New(rand.NewPCG(uint64(seed), 99))
		data := make([]byte, 300)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		run(t, data)
	})
}

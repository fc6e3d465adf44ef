package shadow

import (
	"testing"
	"time"
)

// BenchmarkPresence: a session's end written into a classic shadow, as a
// request parsed by ApplyAWSLean (how presence was written before
// SetReportedLeaf) and as SetReportedLeaf.
func BenchmarkPresence(b *testing.B) {
	now := time.Unix(1700000000, 0)
	doc, err := ApplyAWS(New(nil, now), []byte(`{"state":{"reported":{"connected":true,"fw":"1.2.3"},"desired":{"led":"on"}}}`), now, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	md := Stamp{At: now.Unix(), Reason: "CLIENT_INITIATED_DISCONNECT"}
	b.Run("request", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			res, err := ApplyAWSLean(doc.Next, []byte(`{"state":{"reported":{"connected":false}}}`), now, Limits{})
			if err != nil {
				b.Fatal(err)
			}
			res.Next.Metadata.Reported["connected"] = md
			_, _ = res.Next.MarshalJSON()
		}
	})
	b.Run("leaf", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := SetReportedLeaf(doc.Next, "connected", false, md.Reason, now, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

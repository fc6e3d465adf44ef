package shadow

import (
	"testing"
	"time"
)

// BenchmarkParsing: a typical device update applied by ApplyAWSLean onto a
// document of ten leaves, and that document's stored form read by Parse,
// each with the one-pass decoder (new) and with the parsing it replaced
// (old, reference_test.go); parseAWS is the request's parsing alone.
func BenchmarkParsing(b *testing.B) {
	now := time.Unix(1700000000, 0)
	base, err := ApplyAWS(New(nil, now), []byte(`{"state":{"desired":{"led":"on","interval":30,"mode":"eco"},`+
		`"reported":{"temperature":20.5,"humidity":41,"status":"ok","fw":"1.2.3","led":"off","rssi":-67,"uptime":123456}}}`), now, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	doc := base.Next
	req := []byte(`{"state":{"reported":{"temperature":21.5,"humidity":40,"status":"ok"}},"clientToken":"5f0c9d2e-7b1a-4c3e-9f2d-8a6b4e1c0d3f"}`)
	stored := base.Stored
	b.Run("ApplyAWSLean/new", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := ApplyAWSLean(doc, req, now, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ApplyAWSLean/old", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := refApplyAWS(doc, req, now, Limits{}, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The request's parsing alone, the part of ApplyAWSLean that changed.
	b.Run("parseAWS/new", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, _, code, _ := parseAWS(doc, req); code != 0 {
				b.Fatal(code)
			}
		}
	})
	b.Run("parseAWS/old", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, _, code, _ := refParseAWS(doc, req); code != 0 {
				b.Fatal(code)
			}
		}
	})
	// What a write of a shadow not kept parsed does: Parse its stored
	// form, then apply, copying the trees (lean) or changing them (in
	// place).
	for _, v := range []struct {
		name  string
		apply func(Document, []byte, time.Time, Limits) (UpdateAWS, error)
	}{{"ParseApply/lean", ApplyAWSLean}, {"ParseApply/inplace", ApplyAWSLeanInPlace}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				d, err := Parse(stored)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := v.apply(d, req, now, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Parse/new", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := Parse(stored); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parse/old", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := refParse(stored); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A device's report to a shadow with no desired state (a fleet that
	// only reports): parsed and applied in place, or merged into the stored
	// form (ApplyAWSStored).
	rep, err := ApplyAWS(New(nil, now), []byte(`{"state":{"reported":{"temperature":20.5,"humidity":41,"status":"ok","fw":"1.2.3","led":"off","rssi":-67,"uptime":123456}}}`), now, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("reported-only/ParseApply/inplace", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			d, err := Parse(rep.Stored)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ApplyAWSLeanInPlace(d, req, now, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reported-only/ApplyAWSLean", func(b *testing.B) { // kept parsed
		b.ReportAllocs()
		for range b.N {
			if _, err := ApplyAWSLean(rep.Next, req, now, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reported-only/ApplyAWSStored", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, ok, err := ApplyAWSStored(rep.Stored, req, now, Limits{}); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}

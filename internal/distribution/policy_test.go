package distribution_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/corral-iot/corral/internal/distribution"
)

func testPolicy() distribution.Policy {
	return distribution.Policy{ID: "near", Fallback: "cn-shanghai",
		Regions: []distribution.PolicyRegion{
			{Region: "cn-shanghai", Instances: []distribution.WeightedTarget{{InstanceID: "sh"}}},
			{Region: "ap-southeast-1", Instances: []distribution.WeightedTarget{{InstanceID: "sg-a", Weight: 3}, {InstanceID: "sg-b", Weight: 1}}},
			{Region: "eu-central-1", Instances: []distribution.WeightedTarget{{InstanceID: "fra"}}},
		},
		CIDRs: []distribution.CIDRRoute{{CIDR: "10.0.0.0/8", Region: "eu-central-1"}, {CIDR: "10.1.0.0/16", Region: "ap-southeast-1"},
			{CIDR: "127.0.0.2/32", Region: "ap-southeast-1"}, {CIDR: "2001:db8::/32", Region: "eu-central-1"}},
		Countries: map[string]string{"SG": "ap-southeast-1", "EU": "eu-central-1"},
	}
}

func TestPolicyChooseRegion(t *testing.T) {
	geo := openGeo(t, map[string][2]string{"127.0.0.3/32": {"SG", "AS"}, "127.0.0.4/32": {"DE", "EU"}, "127.0.0.5/32": {"US", "NA"}})
	p := testPolicy()
	for _, tt := range []struct {
		name, addr string
		geo        bool
		region     string
		why        string
	}{
		{"cidr", "10.2.3.4", false, "eu-central-1", "cidr"},
		{"longest cidr wins", "10.1.2.3", false, "ap-southeast-1", "cidr"},
		{"a /32", "127.0.0.2", true, "ap-southeast-1", "cidr"},
		{"ipv4-mapped ipv6 matches the ipv4 cidr", "::ffff:10.1.2.3", false, "ap-southeast-1", "cidr"},
		{"ipv6 cidr", "2001:db8::1", false, "eu-central-1", "cidr"},
		{"geoip country", "127.0.0.3", true, "ap-southeast-1", "country"},
		{"geoip continent when the country is not in the table", "127.0.0.4", true, "eu-central-1", "continent"},
		{"geoip: neither in the table", "127.0.0.5", true, "cn-shanghai", "fallback"},
		{"geoip: not in the database", "127.0.0.9", true, "cn-shanghai", "fallback"},
		{"no geoip configured", "127.0.0.3", false, "cn-shanghai", "fallback"},
		{"no address", "", true, "cn-shanghai", "fallback"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := netip.ParseAddr(tt.addr)
			var g distribution.Geo
			if tt.geo {
				g = geo
			}
			_, region, why := p.Choose("pk000000001", "dev", addr, g)
			if region != tt.region || why != tt.why {
				t.Fatalf("got %s by %s; want %s by %s", region, why, tt.region, tt.why)
			}
		})
	}
}

// TestPolicyWeights: a region's instances share devices by weight, and a
// device always gets the same instance.
func TestPolicyWeights(t *testing.T) {
	p := testPolicy()
	addr := netip.MustParseAddr("127.0.0.2")
	counts := map[string]int{}
	const n = 4000
	for i := range n {
		dn := fmt.Sprintf("dev%05d", i)
		id, _, _ := p.Choose("pk000000001", dn, addr, nil)
		again, _, _ := p.Choose("pk000000001", dn, addr, nil)
		if id != again {
			t.Fatalf("%s: %s then %s", dn, id, again)
		}
		counts[id]++
	}
	// Weight 3 : 1 → 75% ± 4%.
	if a := float64(counts["sg-a"]) / n; a < 0.71 || a > 0.79 || counts["sg-a"]+counts["sg-b"] != n {
		t.Fatalf("shares %v; want about 3:1", counts)
	}
}

func TestPolicyValidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(p *distribution.Policy)
	}{
		{"bad id", func(p *distribution.Policy) { p.ID = "Bad_Id" }},
		{"no regions", func(p *distribution.Policy) { p.Regions = nil }},
		{"fallback not a region", func(p *distribution.Policy) { p.Fallback = "us-east-1" }},
		{"cidr to an unknown region", func(p *distribution.Policy) { p.CIDRs[0].Region = "us-east-1" }},
		{"bad cidr", func(p *distribution.Policy) { p.CIDRs[0].CIDR = "10.0.0.0/33" }},
		{"country lower case", func(p *distribution.Policy) { p.Countries = map[string]string{"sg": "cn-shanghai"} }},
		{"weight over 1000", func(p *distribution.Policy) { p.Regions[1].Instances[0].Weight = 1001 }},
		{"negative weight", func(p *distribution.Policy) { p.Regions[1].Instances[0].Weight = -1 }},
		{"region twice", func(p *distribution.Policy) { p.Regions[2].Region = "cn-shanghai" }},
		{"region without instances", func(p *distribution.Policy) { p.Regions[2].Instances = nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{})
			p := testPolicy()
			for i := range p.Regions {
				for j := range p.Regions[i].Instances {
					f.addInstance(t, p.Regions[i].Instances[j].InstanceID, p.Regions[i].Region)
				}
			}
			tt.edit(&p)
			if _, err := f.svc.PutPolicy(ctx, f.admin, p, false); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

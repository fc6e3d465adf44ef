package distribution

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"
	"time"
)

// Policy is a proximity policy: regions, each served by one or more
// instances, and the tables that pick a region from a device's source
// address. The choice, in order: the allocation webhook when set (its
// answer, or on failure or timeout the rest of the rules); the longest
// matching CIDR; the GeoIP database's country, then continent; the
// fallback region. Within a region, instances share devices by weight,
// hashed on the device, so a device keeps its instance while the policy
// does not change.
type Policy struct {
	ID        string         `json:"policyId"`
	AccountID string         `json:"-"`
	Name      string         `json:"name,omitempty"`
	Regions   []PolicyRegion `json:"regions" doc:"the regions devices may go to, each with its instances"`
	// Countries maps an ISO 3166 country code (e.g. SG) or a continent
	// code (AS, EU, NA, SA, AF, OC, AN) to a region of Regions.
	Countries map[string]string `json:"countries,omitempty" doc:"ISO country code (SG) or continent code (EU) → region, looked up in the GeoIP database"`
	CIDRs     []CIDRRoute       `json:"cidrs,omitempty" doc:"source address ranges → region; the longest match wins"`
	Fallback  string            `json:"fallback" doc:"the region when nothing matches"`
	// Webhook, when set, is called (signed, with the device and its
	// address) to choose the instance; see AllocationRequest.
	Webhook     string    `json:"webhook,omitempty" doc:"allocation function URL: POSTed {productKey, deviceName, sourceIp, regions}, answers {instanceId}; on error or timeout the tables decide"`
	GmtCreate   time.Time `json:"gmtCreate"`
	GmtModified time.Time `json:"gmtModified"`

	prefixes []netip.Prefix // CIDRs parsed, by index; nil until compile
}

// compile parses the CIDR table once, for a policy read to be applied
// many times.
func (p *Policy) compile() {
	p.prefixes = make([]netip.Prefix, len(p.CIDRs))
	for i, c := range p.CIDRs {
		p.prefixes[i], _ = netip.ParsePrefix(c.CIDR)
	}
}

// PolicyRegion is one region of a policy and its instances.
type PolicyRegion struct {
	Region    string           `json:"region"`
	Instances []WeightedTarget `json:"instances"`
}

// WeightedTarget is an instance of a region and its share of devices.
type WeightedTarget struct {
	InstanceID string `json:"instanceId"`
	Weight     int    `json:"weight,omitempty" doc:"1-1000 (default 1): the instance's share of the region's devices"`
}

// CIDRRoute sends devices from a range to a region.
type CIDRRoute struct {
	CIDR   string `json:"cidr"`
	Region string `json:"region"`
}

// maxTable bounds each table of a policy.
const maxTable = 1000

// validate checks the policy's own consistency (the instances' existence
// is the service's check) and normalises weights.
func (p *Policy) validate() error {
	if err := ValidID("policyId", p.ID); err != nil {
		return err
	}
	if len(p.Name) > 128 {
		return fmt.Errorf("name: %w: at most 128 characters", ErrInvalid)
	}
	if len(p.Regions) == 0 || len(p.Regions) > 64 {
		return fmt.Errorf("regions: %w: 1 to 64 regions", ErrInvalid)
	}
	regions := map[string]bool{}
	for i := range p.Regions {
		r := &p.Regions[i]
		field := fmt.Sprintf("regions[%d]", i)
		if err := ValidRegion(field+".region", r.Region); err != nil {
			return err
		}
		if regions[r.Region] {
			return fmt.Errorf("%s.region: %w: %s is listed twice", field, ErrInvalid, r.Region)
		}
		regions[r.Region] = true
		if len(r.Instances) == 0 || len(r.Instances) > 64 {
			return fmt.Errorf("%s.instances: %w: 1 to 64 instances", field, ErrInvalid)
		}
		for j := range r.Instances {
			t := &r.Instances[j]
			if err := ValidID(fmt.Sprintf("%s.instances[%d].instanceId", field, j), t.InstanceID); err != nil {
				return err
			}
			if t.Weight == 0 {
				t.Weight = 1
			}
			if t.Weight < 1 || t.Weight > 1000 {
				return fmt.Errorf("%s.instances[%d].weight: %w: 1 to 1000", field, j, ErrInvalid)
			}
		}
	}
	if !regions[p.Fallback] {
		return fmt.Errorf("fallback: %w: %q is not one of the policy's regions", ErrInvalid, p.Fallback)
	}
	if len(p.Countries) > maxTable || len(p.CIDRs) > maxTable {
		return fmt.Errorf("countries: %w: at most %d countries and %d CIDRs", ErrInvalid, maxTable, maxTable)
	}
	for code, r := range p.Countries {
		if len(code) != 2 || strings.ToUpper(code) != code {
			return fmt.Errorf("countries: %w: %q is not a 2-letter upper-case country or continent code", ErrInvalid, code)
		}
		if !regions[r] {
			return fmt.Errorf("countries[%s]: %w: %q is not one of the policy's regions", code, ErrInvalid, r)
		}
	}
	for i, c := range p.CIDRs {
		if _, err := netip.ParsePrefix(c.CIDR); err != nil {
			return fmt.Errorf("cidrs[%d].cidr: %w: %q is not a CIDR such as 10.0.0.0/8", i, ErrInvalid, c.CIDR)
		}
		if !regions[c.Region] {
			return fmt.Errorf("cidrs[%d].region: %w: %q is not one of the policy's regions", i, ErrInvalid, c.Region)
		}
	}
	if len(p.Webhook) > 512 {
		return fmt.Errorf("webhook: %w: at most 512 characters", ErrInvalid)
	}
	return nil
}

// Geo tells a source address's country and continent codes ("" when
// unknown).
type Geo interface {
	Locate(addr netip.Addr) (country, continent string)
}

// region picks the region of a source address: the longest CIDR match,
// then the GeoIP country, then continent, then the fallback. Pure.
func (p *Policy) region(addr netip.Addr, geo Geo) (region, why string) {
	best := -1
	addr = addr.Unmap()
	for i, c := range p.CIDRs {
		var pfx netip.Prefix
		if len(p.prefixes) == len(p.CIDRs) {
			pfx = p.prefixes[i]
		} else {
			pfx, _ = netip.ParsePrefix(c.CIDR)
		}
		if !pfx.IsValid() || !pfx.Contains(addr) {
			continue
		}
		if pfx.Bits() > best {
			best, region = pfx.Bits(), c.Region
		}
	}
	if best >= 0 {
		return region, "cidr"
	}
	if geo != nil && len(p.Countries) > 0 && addr.IsValid() {
		country, continent := geo.Locate(addr)
		if r, ok := p.Countries[country]; ok && country != "" {
			return r, "country"
		}
		if r, ok := p.Countries[continent]; ok && continent != "" {
			return r, "continent"
		}
	}
	return p.Fallback, "fallback"
}

// pick chooses one instance of a region by weight, hashed on the device
// (ProductKey and DeviceName): the same device gets the same instance as
// long as the region's instances and weights stay. Pure.
func (r PolicyRegion) pick(pk, dn string) string {
	if len(r.Instances) == 1 {
		return r.Instances[0].InstanceID
	}
	total := 0
	for _, t := range r.Instances {
		total += max(t.Weight, 1)
	}
	h := fnv.New64a()
	h.Write([]byte(pk))
	h.Write([]byte{0})
	h.Write([]byte(dn))
	var sum [8]byte
	n := int(binary.BigEndian.Uint64(h.Sum(sum[:0])) % uint64(total))
	for _, t := range r.Instances {
		if n -= max(t.Weight, 1); n < 0 {
			return t.InstanceID
		}
	}
	return r.Instances[len(r.Instances)-1].InstanceID
}

// Choose is the policy's instance for a device at a source address,
// without the webhook, and the rule that decided. Pure.
func (p *Policy) Choose(pk, dn string, addr netip.Addr, geo Geo) (instanceID, region, why string) {
	region, why = p.region(addr, geo)
	for _, r := range p.Regions {
		if r.Region == region {
			return r.pick(pk, dn), region, why
		}
	}
	return "", region, why
}

// instanceIDs lists every instance the policy names.
func (p *Policy) instanceIDs() []string {
	var ids []string
	for _, r := range p.Regions {
		for _, t := range r.Instances {
			ids = append(ids, t.InstanceID)
		}
	}
	return ids
}

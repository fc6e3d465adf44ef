package httpapi

import (
	"context"
	"fmt"

	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/registry"
)

// Distribution serves instances, proximity policies and provisioning
// records (distribution.Service).
type Distribution interface {
	PutInstance(ctx context.Context, p registry.Principal, in distribution.InstanceInput, replace bool) (distribution.Instance, error)
	GetInstance(ctx context.Context, p registry.Principal, id string) (distribution.Instance, error)
	ListInstances(ctx context.Context, p registry.Principal) ([]distribution.Instance, error)
	DeleteInstance(ctx context.Context, p registry.Principal, id string) error
	PutPolicy(ctx context.Context, p registry.Principal, pol distribution.Policy, replace bool) (distribution.Policy, error)
	GetPolicy(ctx context.Context, p registry.Principal, id string) (distribution.Policy, error)
	ListPolicies(ctx context.Context, p registry.Principal) ([]distribution.Policy, error)
	DeletePolicy(ctx context.Context, p registry.Principal, id string) error
	SetRecord(ctx context.Context, p registry.Principal, pk, dn string, in distribution.RecordInput) (distribution.Record, error)
	GetRecord(ctx context.Context, p registry.Principal, pk, dn string) (distribution.Record, error)
	ListRecords(ctx context.Context, p registry.Principal, pk, after string, limit int) ([]distribution.Record, error)
	DeleteRecord(ctx context.Context, p registry.Principal, pk, dn string) error
}

type instanceList struct {
	Instances []distribution.Instance `json:"instances"`
}

type policyList struct {
	Policies []distribution.Policy `json:"policies"`
}

type recordList struct {
	Records    []distribution.Record `json:"records"`
	NextCursor string                `json:"nextCursor,omitempty"`
}

// distributionRoutes are the routes of instances, policies and records.
func (a *API) distributionRoutes() []*route {
	const tag = "distribution"
	return []*route{
		{Method: "POST", Path: "/v1/instances", Summary: "Tell this corral of another instance (its region, device-facing endpoints, API URL and a credential for instance-to-instance calls, stored sealed); a system administrator's key adds a system instance every account may use", Tag: tag, Role: admin, Body: distribution.InstanceInput{}, Status: 201, Resp: distribution.Instance{}, h: withDist(a, a.createInstance)},
		{Method: "GET", Path: "/v1/instances", Summary: "The instances the account may send devices to: this corral, the system instances and the account's own (credentials are never shown)", Tag: tag, Role: admin, Status: 200, Resp: instanceList{}, h: withDist(a, a.listInstances)},
		{Method: "GET", Path: "/v1/instances/{instanceId}", Summary: "Get an instance", Tag: tag, Role: admin, Status: 200, Resp: distribution.Instance{}, h: withDist(a, a.getInstance)},
		{Method: "PUT", Path: "/v1/instances/{instanceId}", Summary: "Create or replace an instance (an empty credential keeps the stored one)", Tag: tag, Role: admin, Body: distribution.InstanceInput{}, Status: 200, Resp: distribution.Instance{}, h: withDist(a, a.putInstance)},
		{Method: "DELETE", Path: "/v1/instances/{instanceId}", Summary: "Forget an instance; one a provisioning record or policy names is 409", Tag: tag, Role: admin, Status: 204, h: withDist(a, a.deleteInstance)},

		{Method: "POST", Path: "/v1/distribution/policies", Summary: "Create a proximity policy: regions with their instances (weights 1-1000), CIDR and GeoIP country/continent tables, a fallback region, an optional allocation webhook", Tag: tag, Role: admin, Body: distribution.Policy{}, Status: 201, Resp: distribution.Policy{}, h: withDist(a, a.createPolicy)},
		{Method: "GET", Path: "/v1/distribution/policies", Summary: "List the account's proximity policies", Tag: tag, Role: readonly, Status: 200, Resp: policyList{}, h: withDist(a, a.listPolicies)},
		{Method: "GET", Path: "/v1/distribution/policies/{policyId}", Summary: "Get a proximity policy", Tag: tag, Role: readonly, Status: 200, Resp: distribution.Policy{}, h: withDist(a, a.getPolicy)},
		{Method: "PUT", Path: "/v1/distribution/policies/{policyId}", Summary: "Create or replace a proximity policy", Tag: tag, Role: admin, Body: distribution.Policy{}, Status: 200, Resp: distribution.Policy{}, h: withDist(a, a.putPolicy)},
		{Method: "DELETE", Path: "/v1/distribution/policies/{policyId}", Summary: "Delete a proximity policy; one a provisioning record names is 409", Tag: tag, Role: admin, Status: 204, h: withDist(a, a.deletePolicy)},

		{Method: "GET", Path: "/v1/products/{productKey}/provisioning", Summary: "The product's provisioning records at this distribution centre, by DeviceName", Tag: tag, Role: readonly,
			Query: []param{{"limit", "integer", fmt.Sprintf("page size, 1 to %d (default 100)", maxPage)}, {"cursor", "string", "nextCursor of the previous page"}}, Status: 200, Resp: recordList{}, h: withDist(a, a.listRecords)},
		{Method: "GET", Path: "/v1/products/{productKey}/devices/{deviceName}/provisioning", Summary: "The device's provisioning record (QueryDeviceProvisioning): source and target instance and region; 404 when it has none (it bootstraps to the default instance)", Tag: tag, Role: readonly, Status: 200, Resp: distribution.Record{}, h: withDist(a, a.getRecord)},
		{Method: "PUT", Path: "/v1/products/{productKey}/devices/{deviceName}/provisioning", Summary: "Point the device's bootstrap to an instance or a proximity policy (the device need not exist at this corral)", Tag: tag, Role: admin, Body: distribution.RecordInput{}, Status: 200, Resp: distribution.Record{}, h: withDist(a, a.setRecord)},
		{Method: "DELETE", Path: "/v1/products/{productKey}/devices/{deviceName}/provisioning", Summary: "Delete the device's provisioning record: it bootstraps to the default instance", Tag: tag, Role: admin, Status: 204, h: withDist(a, a.deleteRecord)},
	}
}

func (a *API) dist() (Distribution, error) {
	if a.o.Distribution == nil {
		return nil, fmt.Errorf("this corral is not a distribution centre (distribution_centre=false): %w", registry.ErrNotFound)
	}
	return a.o.Distribution, nil
}

// withDist gives a handler the distribution service, or answers 404 on a
// corral that is not a distribution centre.
func withDist(a *API, h func(c *call, d Distribution) (any, error)) func(c *call) (any, error) {
	return withService(a.dist, h)
}

func (a *API) createInstance(c *call, d Distribution) (any, error) {
	var in distribution.InstanceInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return d.PutInstance(c.ctx(), c.p, in, false)
}

func (a *API) putInstance(c *call, d Distribution) (any, error) {
	var in distribution.InstanceInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	if in.ID != "" && in.ID != c.param("instanceId") {
		return nil, &badRequest{field: "instanceId", msg: "instanceId in the body differs from the path's"}
	}
	in.ID = c.param("instanceId")
	return d.PutInstance(c.ctx(), c.p, in, true)
}

func (a *API) listInstances(c *call, d Distribution) (any, error) {
	ins, err := d.ListInstances(c.ctx(), c.p)
	return instanceList{Instances: ins}, err
}

func (a *API) getInstance(c *call, d Distribution) (any, error) {
	return d.GetInstance(c.ctx(), c.p, c.param("instanceId"))
}

func (a *API) deleteInstance(c *call, d Distribution) (any, error) {
	return nil, d.DeleteInstance(c.ctx(), c.p, c.param("instanceId"))
}

func (a *API) createPolicy(c *call, d Distribution) (any, error) {
	var p distribution.Policy
	if err := c.decode(&p); err != nil {
		return nil, err
	}
	return d.PutPolicy(c.ctx(), c.p, p, false)
}

func (a *API) putPolicy(c *call, d Distribution) (any, error) {
	var p distribution.Policy
	if err := c.decode(&p); err != nil {
		return nil, err
	}
	if p.ID != "" && p.ID != c.param("policyId") {
		return nil, &badRequest{field: "policyId", msg: "policyId in the body differs from the path's"}
	}
	p.ID = c.param("policyId")
	return d.PutPolicy(c.ctx(), c.p, p, true)
}

func (a *API) listPolicies(c *call, d Distribution) (any, error) {
	ps, err := d.ListPolicies(c.ctx(), c.p)
	return policyList{Policies: ps}, err
}

func (a *API) getPolicy(c *call, d Distribution) (any, error) {
	return d.GetPolicy(c.ctx(), c.p, c.param("policyId"))
}

func (a *API) deletePolicy(c *call, d Distribution) (any, error) {
	return nil, d.DeletePolicy(c.ctx(), c.p, c.param("policyId"))
}

func (a *API) listRecords(c *call, d Distribution) (any, error) {
	limit, err := c.limit()
	if err != nil {
		return nil, err
	}
	after, err := c.cursor()
	if err != nil {
		return nil, err
	}
	rs, err := d.ListRecords(c.ctx(), c.p, c.param("productKey"), after, limit+1)
	if err != nil {
		return nil, err
	}
	out := recordList{Records: rs}
	if len(rs) > limit {
		out.Records = rs[:limit]
		out.NextCursor = encodeCursor(rs[limit-1].DeviceName)
	}
	return out, nil
}

func (a *API) getRecord(c *call, d Distribution) (any, error) {
	return d.GetRecord(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"))
}

func (a *API) setRecord(c *call, d Distribution) (any, error) {
	var in distribution.RecordInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return d.SetRecord(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"), in)
}

func (a *API) deleteRecord(c *call, d Distribution) (any, error) {
	return nil, d.DeleteRecord(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"))
}

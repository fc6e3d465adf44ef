package httpapi

import (
	"context"
	"fmt"

	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/registry"
)

// Jobs serves distribution jobs (jobs.Service).
type Jobs interface {
	Create(ctx context.Context, p registry.Principal, in jobs.Input) (jobs.Job, []jobs.Item, error)
	Get(ctx context.Context, p registry.Principal, id string) (jobs.Job, error)
	List(ctx context.Context, p registry.Principal) ([]jobs.Job, error)
	Details(ctx context.Context, p registry.Principal, id, after string, limit int) ([]jobs.Item, error)
	Abort(ctx context.Context, p registry.Principal, id string) (jobs.Job, error)
	Delete(ctx context.Context, p registry.Principal, id string) error
}

// Imports is the destination side of the instance-to-instance API
// (jobs.Destination).
type Imports interface {
	PublicKey() jobs.TransitKey
	IssueCode(ctx context.Context, p registry.Principal) (jobs.AuthCode, error)
	Authorize(ctx context.Context, p registry.Principal, in jobs.Authorization) (jobs.Grant, error)
	Release(ctx context.Context, p registry.Principal, in jobs.Grant) error
	Grants(ctx context.Context, p registry.Principal) ([]jobs.GrantInfo, error)
	Revoke(ctx context.Context, p registry.Principal, id string) error
	ImportProduct(ctx context.Context, p registry.Principal, pk string, in jobs.ProductImport) (jobs.Imported, error)
	ImportDevice(ctx context.Context, p registry.Principal, pk, dn string, in jobs.DeviceImport) (jobs.Imported, error)
}

type jobList struct {
	Jobs []jobs.Job `json:"jobs"`
}

type jobItems struct {
	Devices    []jobs.Item `json:"devices"`
	NextCursor string      `json:"nextCursor,omitempty"`
}

// distJobRoutes are the routes of jobs and of the instance-to-instance
// imports.
func (a *API) distJobRoutes() []*route {
	const tag = "distribution"
	return []*route{
		{Method: "POST", Path: "/v1/distribution/jobs", Summary: "Create a distribution job: up to 10,000 devices of a product (deviceNames, or a csv of up to 1,000 rows) to one instance (strategy 0) or by a proximity policy (strategy 1, decided per device when it moves); at most 10 open jobs per account", Tag: tag, Role: operator, Body: jobs.Input{}, Status: 201, Resp: jobs.Job{}, h: withJobs(a, a.createJob)},
		{Method: "POST", Path: "/v1/distribution/jobs:plan", Summary: "Dry run: the devices a job would move and where, checked as a job is; nothing is created", Tag: tag, Role: operator, Body: jobs.Input{}, Status: 200, Resp: jobItems{}, h: withJobs(a, a.planJob)},
		{Method: "GET", Path: "/v1/distribution/jobs", Summary: "The account's distribution jobs, newest first", Tag: tag, Role: readonly, Status: 200, Resp: jobList{}, h: withJobs(a, a.listJobs)},
		{Method: "GET", Path: "/v1/distribution/jobs/{jobId}", Summary: "A job (QueryDeviceDistributeJob): status 0 initializing, 1 running, 2 done (see failed), 3 aborted; progress %, moved and failed counts, current while it runs", Tag: tag, Role: readonly, Status: 200, Resp: jobs.Job{}, h: withJobs(a, a.getJob)},
		{Method: "GET", Path: "/v1/distribution/jobs/{jobId}/devices", Summary: "A job's devices with their result codes (200 moved, 404 not registered, 409 name taken at the destination, 422 no instance chosen, 499 aborted, 500 source failure, 502 destination failure; 0 not yet)", Tag: tag, Role: readonly,
			Query: []param{{"limit", "integer", fmt.Sprintf("page size, 1 to %d (default 100)", maxPage)}, {"cursor", "string", "nextCursor of the previous page"}}, Status: 200, Resp: jobItems{}, h: withJobs(a, a.jobDevices)},
		{Method: "POST", Path: "/v1/distribution/jobs/{jobId}:abort", Summary: "Abort an open job: devices already moving finish, the others get 499", Tag: tag, Role: operator, Status: 200, Resp: jobs.Job{}, h: withJobs(a, a.abortJob)},
		{Method: "DELETE", Path: "/v1/distribution/jobs/{jobId}", Summary: "Delete a finished job and its results; an open one is 409", Tag: tag, Role: operator, Status: 204, h: withJobs(a, a.deleteJob)},

		{Method: "POST", Path: "/v1/distribution/authorization-codes", Summary: "Issue a code (valid 5 minutes, once) that lets another account's distribution job move devices into this account; give it to that account with your account id (targetUid)", Tag: tag, Role: admin, Status: 201, Resp: jobs.AuthCode{}, h: a.issueCode},
		{Method: "POST", Path: "/v1/distribution/authorizations", Summary: "Instance-to-instance: exchange an authorisation code of the target account for the grant a cross-account job's imports carry", Tag: tag, Role: admin, Body: jobs.Authorization{}, Status: 200, Resp: jobs.Grant{}, h: a.authorize},
		{Method: "POST", Path: "/v1/distribution/authorizations:release", Summary: "Instance-to-instance: end a grant of the calling account (its job is over); its imports are refused from then on", Tag: tag, Role: admin, Body: jobs.Grant{}, Status: 204, h: a.releaseGrant},
		{Method: "GET", Path: "/v1/distribution/grants", Summary: "The grants letting other accounts' distribution jobs import into this account (held while their jobs run)", Tag: tag, Role: admin, Status: 200, Resp: grantList{}, h: a.listGrants},
		{Method: "DELETE", Path: "/v1/distribution/grants/{grantId}", Summary: "Revoke a grant: the job holding it can import nothing more into this account", Tag: tag, Role: admin, Status: 204, h: a.revokeGrant},
		{Method: "GET", Path: "/v1/distribution/transit-key", Summary: "Instance-to-instance: this instance's id and the X25519 public key device secrets are sealed with for it", Tag: tag, Role: admin, Status: 200, Resp: jobs.TransitKey{}, h: a.transitKey},
		{Method: "PUT", Path: "/v1/distribution/imports/products/{productKey}", Summary: "Instance-to-instance: import a distributed product (read-only here) into the calling key's account; idempotent", Tag: tag, Role: admin, Body: jobs.ProductImport{}, Status: 200, Resp: jobs.Imported{}, h: a.importProduct},
		{Method: "PUT", Path: "/v1/distribution/imports/products/{productKey}/devices/{deviceName}", Summary: "Instance-to-instance: import a device's triple, its secret sealed for this instance; idempotent; a device coming back is let in again", Tag: tag, Role: admin, Body: jobs.DeviceImport{}, Status: 200, Resp: jobs.Imported{}, h: a.importDevice},
	}
}

func (a *API) jobs() (Jobs, error) {
	if a.o.Jobs == nil {
		return nil, fmt.Errorf("this corral is not a distribution centre (distribution_centre=false): %w", registry.ErrNotFound)
	}
	return a.o.Jobs, nil
}

// withJobs gives a handler the job service, or answers 404 on a corral
// that is not a distribution centre.
func withJobs(a *API, h func(c *call, j Jobs) (any, error)) func(c *call) (any, error) {
	return withService(a.jobs, h)
}

// withService gives a handler the service get answers, or get's error.
func withService[S any](get func() (S, error), h func(c *call, s S) (any, error)) func(c *call) (any, error) {
	return func(c *call) (any, error) {
		s, err := get()
		if err != nil {
			return nil, err
		}
		return h(c, s)
	}
}

func (a *API) imports() (Imports, error) {
	if a.o.Imports == nil {
		return nil, fmt.Errorf("this corral takes no distributed devices (distribution_centre=false): %w", registry.ErrNotFound)
	}
	return a.o.Imports, nil
}

func (a *API) createJob(c *call, j Jobs) (any, error) {
	var in jobs.Input
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, &badRequest{field: "dryRun", msg: "a dry run is POST /v1/distribution/jobs:plan"}
	}
	job, _, err := j.Create(c.ctx(), c.p, in)
	return job, err
}

func (a *API) planJob(c *call, j Jobs) (any, error) {
	var in jobs.Input
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	in.DryRun = true
	_, plan, err := j.Create(c.ctx(), c.p, in)
	return jobItems{Devices: plan}, err
}

func (a *API) listJobs(c *call, j Jobs) (any, error) {
	js, err := j.List(c.ctx(), c.p)
	return jobList{Jobs: js}, err
}

func (a *API) getJob(c *call, j Jobs) (any, error) {
	return j.Get(c.ctx(), c.p, c.param("jobId"))
}

func (a *API) jobDevices(c *call, j Jobs) (any, error) {
	limit, err := c.limit()
	if err != nil {
		return nil, err
	}
	after, err := c.cursor()
	if err != nil {
		return nil, err
	}
	items, err := j.Details(c.ctx(), c.p, c.param("jobId"), after, limit)
	if err != nil {
		return nil, err
	}
	out := jobItems{Devices: items}
	if len(items) == limit {
		out.NextCursor = encodeCursor(items[len(items)-1].DeviceName)
	}
	return out, nil
}

func (a *API) abortJob(c *call, j Jobs) (any, error) {
	return j.Abort(c.ctx(), c.p, c.param("jobId"))
}

func (a *API) deleteJob(c *call, j Jobs) (any, error) {
	return nil, j.Delete(c.ctx(), c.p, c.param("jobId"))
}

func (a *API) transitKey(c *call) (any, error) {
	im, err := a.imports()
	if err != nil {
		return nil, err
	}
	return im.PublicKey(), nil
}

func (a *API) issueCode(c *call) (any, error) {
	im, err := a.imports()
	if err != nil {
		return nil, err
	}
	return im.IssueCode(c.ctx(), c.p)
}

func (a *API) authorize(c *call) (any, error) {
	im, err := a.imports()
	if err != nil {
		return nil, err
	}
	var in jobs.Authorization
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return im.Authorize(c.ctx(), c.p, in)
}

func (a *API) releaseGrant(c *call) (any, error) {
	im, err := a.imports()
	if err != nil {
		return nil, err
	}
	var in jobs.Grant
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return nil, im.Release(c.ctx(), c.p, in)
}

type grantList struct {
	Grants []jobs.GrantInfo `json:"grants"`
}

func (a *API) listGrants(c *call) (any, error) {
	im, err := a.imports()
	if err != nil {
		return nil, err
	}
	gs, err := im.Grants(c.ctx(), c.p)
	if err != nil {
		return nil, err
	}
	return grantList{Grants: gs}, nil
}

func (a *API) revokeGrant(c *call) (any, error) {
	im, err := a.imports()
	if err != nil {
		return nil, err
	}
	return nil, im.Revoke(c.ctx(), c.p, c.param("grantId"))
}

func (a *API) importProduct(c *call) (any, error) {
	im, err := a.imports()
	if err != nil {
		return nil, err
	}
	var in jobs.ProductImport
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return im.ImportProduct(c.ctx(), c.p, c.param("productKey"), in)
}

func (a *API) importDevice(c *call) (any, error) {
	im, err := a.imports()
	if err != nil {
		return nil, err
	}
	var in jobs.DeviceImport
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return im.ImportDevice(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"), in)
}

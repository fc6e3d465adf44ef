package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/registry"
)

// Product is a product's data as it moves: opaque JSON the destination
// imports as a read-only distributed product.
type Product struct {
	ProductKey   string          `json:"productKey"`
	Info         json.RawMessage `json:"product"`
	TopicClasses json.RawMessage `json:"topicClasses,omitempty"`
	ThingModel   json.RawMessage `json:"thingModel,omitempty"`
}

// Source is this corral's registry as a job reads and marks devices.
type Source interface {
	// ExportProduct is a product of the principal's account;
	// registry.ErrNotFound for another account's or a missing one.
	ExportProduct(ctx context.Context, p registry.Principal, pk string) (Product, error)
	// MissingDevices lists the names not registered under pk.
	MissingDevices(ctx context.Context, pk string, names []string) ([]string, error)
	// DeviceSecret is a device's secret (never logged).
	DeviceSecret(ctx context.Context, pk, dn string) (string, error)
	// MarkDistributed refuses the device at CONNECT from now on, naming
	// the instance it went to; repeating it is a success.
	MarkDistributed(ctx context.Context, pk, dn, instanceID string) error
}

// Target is a destination as the Remote calls it.
type Target struct {
	AccountID        string // the job's account, whose instance credential is used
	SourceInstanceID string // this corral
	InstanceID       string
	TargetAccountID  string // "" for the same account
	AuthCode         string
}

// DeviceImport is one device's triple as it moves, its secret sealed for
// the destination (transit.Seal with transit.AAD).
type DeviceImport struct {
	ProductKey       string `json:"productKey"`
	DeviceName       string `json:"deviceName"`
	SealedSecret     []byte `json:"sealedSecret"`
	SourceInstanceID string `json:"sourceInstanceId"`
	Grant            string `json:"grant,omitempty" doc:"a cross-account grant"`
}

// Remote makes the instance-to-instance calls. Imports are idempotent:
// importing the same triple again is a success.
type Remote interface {
	// Authorize exchanges a cross-account authorisation code at the
	// destination for the grant the job's imports carry (Target.AuthCode
	// from then on), before the job is created.
	Authorize(ctx context.Context, t Target) (string, error)
	// Release ends the grant (Target.AuthCode) once the job is over.
	Release(ctx context.Context, t Target) error
	// PublicKey is the destination's transit public key.
	PublicKey(ctx context.Context, t Target) ([]byte, error)
	ImportProduct(ctx context.Context, t Target, p Product) error
	// ImportDevice answers ErrConflict when another triple holds the name.
	ImportDevice(ctx context.Context, t Target, d DeviceImport) error
}

// Directory resolves destinations (distribution.Service).
type Directory interface {
	Instance(ctx context.Context, accountID, id string) (distribution.Instance, error)
	ChooseInstance(ctx context.Context, accountID, policyID, pk, dn string, addr netip.Addr) (string, error)
}

// Records are the centre's provisioning records (distribution.Store).
type Records interface {
	GetRecord(ctx context.Context, pk, dn string) (distribution.Record, error)
	PutRecord(ctx context.Context, r distribution.Record) error
}

// Devices is the broker as a job sees connected devices.
type Devices interface {
	// Address is an online device's source address; false when offline.
	Address(pk, dn string) (netip.Addr, bool)
	// Notify publishes thing.bootstrap.notify to an online device, waits
	// for its reply or a timeout, then forces it off; nil for an offline
	// device.
	Notify(ctx context.Context, pk, dn string) error
}

// Events tell applications about jobs and devices (broker events and
// webhooks). Calls must not block for long.
type Events interface {
	JobEvent(ctx context.Context, j Job)
	DeviceEvent(ctx context.Context, j Job, it Item)
}

// Auditor records operators' job actions on the audit trail.
type Auditor interface {
	Record(ctx context.Context, e audit.Entry)
}

// DefaultWorkers is how many devices of one job move at once unless
// Options say otherwise: enough concurrent steps for the stores' group
// commits and the destination's imports to fill (BenchmarkJob10000:
// 64 took 10.3 s, 128 took 8.0 s; bench/RESULTS.md).
const DefaultWorkers = 128

// Options configure a Service. Store, Source, Remote, Directory, Records
// and Devices are required.
type Options struct {
	Store     Store
	Source    Source
	Remote    Remote
	Directory Directory
	Records   Records
	Devices   Devices
	Events    Events  // nil: none
	Auditor   Auditor // nil: none; job create, abort and delete
	// Self is this corral, the source of its jobs.
	Self distribution.Instance
	// Workers is how many devices of one job move at once (default
	// DefaultWorkers).
	Workers int
	Rand    io.Reader // default crypto/rand
	Logger  *slog.Logger
	Now     func() time.Time
}

// Service creates, runs and reports jobs. Start resumes open jobs; Close
// stops runs where they are (each device at its saved step) for the next
// Start to finish. It is safe for concurrent use.
type Service struct {
	o   Options
	log *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per run

	// mu guards running and makes the open-job count and creation one
	// step per account.
	mu      sync.Mutex
	running map[string]*run // job id → its run in this process
}

// run is a job running in this process.
type run struct {
	abort chan struct{} // closed by Abort: no device starts after it
	once  sync.Once
}

// New returns a Service; call Start to run jobs.
func New(o Options) *Service {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{o: o, log: o.Logger, ctx: ctx, cancel: cancel, running: map[string]*run{}}
}

func (s *Service) now() time.Time { return s.o.Now().UTC().Truncate(time.Millisecond) }

// Start resumes every open job (after a crash or restart).
func (s *Service) Start(ctx context.Context) error {
	open, err := s.o.Store.OpenJobs(ctx)
	if err != nil {
		return fmt.Errorf("resuming distribution jobs: %w", err)
	}
	for _, j := range open {
		s.log.Info("resuming distribution job", "jobId", j.JobID, "status", j.Status.String())
		s.launch(j)
	}
	return nil
}

// Close stops every run and waits for them; unfinished devices stay at
// their saved step.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

func (s *Service) launch(j Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.running[j.JobID]; ok || s.ctx.Err() != nil {
		return
	}
	r := &run{abort: make(chan struct{})}
	s.running[j.JobID] = r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runJob(s.ctx, r, j)
		s.mu.Lock()
		delete(s.running, j.JobID)
		s.mu.Unlock()
	}()
}

func newID(r io.Reader) (string, error) {
	b := make([]byte, 10)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("job id: %w", err)
	}
	return "job-" + hex.EncodeToString(b), nil
}

// Create validates a job and starts it, or with DryRun answers what
// would move (items with their destination, code 0) and creates nothing.
// Bad input creates nothing: an unknown product, another account's,
// unregistered devices, devices in another open job, an unknown
// destination, a refused authorisation code, an eleventh open job.
func (s *Service) Create(ctx context.Context, p registry.Principal, in Input) (Job, []Item, error) {
	if !p.Role.Allows(registry.RoleOperator) {
		return Job{}, nil, fmt.Errorf("role %s may not create distribution jobs (needs operator): %w", p.Role, registry.ErrForbidden)
	}
	if err := in.validate(); err != nil {
		return Job{}, nil, err
	}
	names, err := in.names()
	if err != nil {
		return Job{}, nil, err
	}
	if _, err := s.o.Source.ExportProduct(ctx, p, in.ProductKey); err != nil {
		return Job{}, nil, fmt.Errorf("productKey %s: %w", in.ProductKey, err)
	}
	missing, err := s.o.Source.MissingDevices(ctx, in.ProductKey, names)
	if err != nil {
		return Job{}, nil, err
	}
	if len(missing) > 0 {
		return Job{}, nil, fmt.Errorf("deviceNames: %w: %d not registered under %s, e.g. %s", ErrInvalid, len(missing), in.ProductKey, missing[0])
	}
	busy, err := s.o.Store.DevicesInOpenJobs(ctx, in.ProductKey)
	if err != nil {
		return Job{}, nil, err
	}
	set := make(map[string]bool, len(busy))
	for _, b := range busy {
		set[b] = true
	}
	for _, n := range names {
		if set[n] {
			return Job{}, nil, fmt.Errorf("deviceNames: %w: %s is in another open job", ErrConflict, n)
		}
	}
	now := s.now()
	j := Job{AccountID: p.AccountID, ProductKey: in.ProductKey, SourceInstanceID: s.o.Self.ID, Strategy: in.Strategy,
		TargetInstanceID: in.TargetInstanceID, PolicyID: in.PolicyID, TargetAccountID: in.TargetAccountID, AuthCode: in.AuthCode,
		Status: StatusInitializing, Total: len(names), GmtCreate: now, GmtModified: now}
	plan := make([]Item, len(names))
	for i, n := range names {
		plan[i] = Item{DeviceName: n}
	}
	if in.Strategy == Specified {
		if in.TargetInstanceID == s.o.Self.ID {
			return Job{}, nil, fmt.Errorf("targetInstanceId: %w: the devices are already at %s", ErrInvalid, s.o.Self.ID)
		}
		if _, err := s.o.Directory.Instance(ctx, p.AccountID, in.TargetInstanceID); err != nil {
			return Job{}, nil, fmt.Errorf("targetInstanceId: %w", err)
		}
		for i := range plan {
			plan[i].TargetInstanceID = in.TargetInstanceID
		}
		if in.TargetAccountID != "" && !in.DryRun {
			g, err := s.o.Remote.Authorize(ctx, s.target(j, in.TargetInstanceID))
			if err != nil {
				return Job{}, nil, fmt.Errorf("authCode: the destination refused it: %w", err)
			}
			j.AuthCode = g
		}
	} else {
		// A dry run shows every device's choice now; a job checks the
		// policy with its first device and decides each when it moves.
		todo := plan
		if !in.DryRun {
			todo = plan[:1]
		}
		for i := range todo {
			addr, _ := s.o.Devices.Address(in.ProductKey, todo[i].DeviceName)
			id, err := s.o.Directory.ChooseInstance(ctx, p.AccountID, in.PolicyID, in.ProductKey, todo[i].DeviceName, addr)
			if err != nil {
				return Job{}, nil, fmt.Errorf("policyId: %w", err)
			}
			todo[i].TargetInstanceID = id
		}
	}
	if in.DryRun {
		return j, plan, nil
	}
	if j.JobID, err = newID(s.o.Rand); err != nil {
		return Job{}, nil, err
	}
	if err := s.create(ctx, j, names); err != nil {
		return Job{}, nil, err
	}
	s.audit(ctx, p, "distribution.job.create", j, createReason(j, len(names)))
	s.event(ctx, j)
	s.launch(j)
	return j, nil, nil
}

// create writes a job unless its account has MaxOpenJobs open; mu makes
// the count and the write one step for this process.
func (s *Service) create(ctx context.Context, j Job, names []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.o.Store.ListJobs(ctx, j.AccountID)
	if err != nil {
		return err
	}
	if open := countOpen(all); open >= MaxOpenJobs {
		return fmt.Errorf("%w: %d open distribution jobs, at most %d per account; wait for one to finish or abort one", ErrLimit, open, MaxOpenJobs)
	}
	if err := s.o.Store.CreateJob(ctx, j, names); err != nil {
		return fmt.Errorf("creating job: %w", err)
	}
	return nil
}

func countOpen(js []Job) int {
	n := 0
	for _, j := range js {
		if j.Status.Open() {
			n++
		}
	}
	return n
}

func (s *Service) target(j Job, instanceID string) Target {
	return Target{AccountID: j.AccountID, SourceInstanceID: s.o.Self.ID, InstanceID: instanceID, TargetAccountID: j.TargetAccountID, AuthCode: j.AuthCode}
}

// Get is a job of the principal's account, its counts current.
func (s *Service) Get(ctx context.Context, p registry.Principal, id string) (Job, error) {
	j, err := s.o.Store.GetJob(ctx, id)
	if err != nil || j.AccountID != p.AccountID {
		return Job{}, fmt.Errorf("distribution job %q: %w", id, ErrNotFound)
	}
	return j, nil
}

// List lists the principal's account's jobs, newest first.
func (s *Service) List(ctx context.Context, p registry.Principal) ([]Job, error) {
	return s.o.Store.ListJobs(ctx, p.AccountID)
}

// Details lists a job's devices with their result codes, by name after
// after.
func (s *Service) Details(ctx context.Context, p registry.Principal, id, after string, limit int) ([]Item, error) {
	if _, err := s.Get(ctx, p, id); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	return s.o.Store.JobItems(ctx, id, after, limit, false)
}

// Abort stops an open job: devices already moving finish, the others
// get code 499 and the job ends aborted (at once when it runs here, or
// when the process that resumes it starts). Aborting a finished job is
// ErrConflict.
func (s *Service) Abort(ctx context.Context, p registry.Principal, id string) (Job, error) {
	if !p.Role.Allows(registry.RoleOperator) {
		return Job{}, fmt.Errorf("role %s may not abort distribution jobs (needs operator): %w", p.Role, registry.ErrForbidden)
	}
	j, err := s.Get(ctx, p, id)
	if err != nil {
		return Job{}, err
	}
	if !j.Status.Open() {
		return Job{}, fmt.Errorf("distribution job %s is %s: %w", id, j.Status, ErrConflict)
	}
	j.AbortRequested, j.GmtModified = true, s.now()
	if err := s.o.Store.UpdateJob(ctx, j); err != nil {
		return Job{}, err
	}
	s.mu.Lock()
	if r, ok := s.running[id]; ok {
		r.once.Do(func() { close(r.abort) })
	}
	s.mu.Unlock()
	s.audit(ctx, p, "distribution.job.abort", j, "")
	return j, nil
}

// Delete deletes a finished job and its results.
func (s *Service) Delete(ctx context.Context, p registry.Principal, id string) error {
	if !p.Role.Allows(registry.RoleOperator) {
		return fmt.Errorf("role %s may not delete distribution jobs (needs operator): %w", p.Role, registry.ErrForbidden)
	}
	j, err := s.Get(ctx, p, id)
	if err != nil {
		return err
	}
	if j.Status.Open() {
		return fmt.Errorf("distribution job %s is %s; abort it first: %w", id, j.Status, ErrConflict)
	}
	if err := s.o.Store.DeleteJob(ctx, id); err != nil {
		return err
	}
	s.audit(ctx, p, "distribution.job.delete", j, "")
	return nil
}

// audit records an operator's job action (never a code or grant).
func (s *Service) audit(ctx context.Context, p registry.Principal, action string, j Job, reason string) {
	if s.o.Auditor == nil {
		return
	}
	s.o.Auditor.Record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: action, Target: j.JobID, Outcome: "ok", Reason: reason})
}

// createReason says what a created job moves where.
func createReason(j Job, n int) string {
	r := fmt.Sprintf("%d devices of %s", n, j.ProductKey)
	if j.Strategy == Specified {
		r += " to instance " + j.TargetInstanceID
	} else {
		r += " by proximity policy " + j.PolicyID
	}
	if j.TargetAccountID != "" {
		r += ", into account " + j.TargetAccountID
	}
	return r
}

func (s *Service) event(ctx context.Context, j Job) {
	if s.o.Events != nil {
		s.o.Events.JobEvent(ctx, j)
	}
}

// finish gives every unfinished device code and itemMsg, and ends the
// job in st with jobMsg.
func (s *Service) finish(ctx context.Context, j Job, st Status, code int, itemMsg, jobMsg string) error {
	for {
		items, err := s.o.Store.JobItems(ctx, j.JobID, "", page, true)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			it.Step, it.Code, it.Message = StepDone, code, itemMsg
			if err := s.o.Store.PutJobItem(ctx, it); err != nil {
				return err
			}
		}
	}
	if j.TargetAccountID != "" && j.AuthCode != "" {
		// The grant imported into another account for this job only,
		// and every device is finished now. Failing to release it fails
		// nothing here: the destination account can still revoke it.
		if err := s.o.Remote.Release(ctx, s.target(j, j.TargetInstanceID)); err != nil {
			s.log.Warn("distribution job: releasing the cross-account grant", "jobId", j.JobID, "instance", j.TargetInstanceID, "err", err)
		}
	}
	j.Status, j.Message, j.GmtModified = st, jobMsg, s.now()
	if err := s.o.Store.UpdateJob(ctx, j); err != nil {
		return err
	}
	if j2, err := s.o.Store.GetJob(ctx, j.JobID); err == nil {
		j = j2
	}
	s.event(ctx, j)
	return nil
}

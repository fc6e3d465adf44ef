package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/distribution/transit"
	"github.com/corral-iot/corral/internal/registry"
)

// page is how many unfinished devices a run reads at once.
const page = 500

// runJob moves a job's unfinished devices with Workers at once. It
// returns early, leaving the job open, when ctx ends (Close); a later
// Start continues from each device's saved step.
func (s *Service) runJob(ctx context.Context, r *run, j Job) {
	m := &mover{s: s, j: j, keys: map[string][]byte{}, products: map[string]*productCopy{}}
	if j.Status == StatusInitializing {
		if j.Strategy == Specified && !j.ProductCopied {
			if err := m.copyProduct(ctx, j.TargetInstanceID); err != nil {
				if ctx.Err() == nil {
					msg := "copying the product to " + j.TargetInstanceID + " failed: " + err.Error()
					s.end(ctx, j, StatusDone, CodeRemoteFailed, msg, msg)
				}
				return
			}
			j.ProductCopied = true
		}
		j.Status, j.GmtModified = StatusRunning, s.now()
		if err := s.o.Store.UpdateJob(ctx, j); err != nil {
			s.log.Error("distribution job: saving its state", "jobId", j.JobID, "err", err)
			return
		}
		m.j = j
		s.event(ctx, j)
	}
	after := ""
	for {
		if j.AbortRequested || aborted(r) {
			break
		}
		items, err := s.o.Store.JobItems(ctx, j.JobID, after, page, true)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("distribution job: reading devices", "jobId", j.JobID, "err", err)
			}
			return
		}
		if len(items) == 0 {
			break
		}
		after = items[len(items)-1].DeviceName
		m.moveAll(ctx, r, items)
		if ctx.Err() != nil {
			return
		}
	}
	if j.AbortRequested || aborted(r) {
		// Devices already past their first step finish moving.
		m.finishStarted(ctx)
		if ctx.Err() == nil {
			s.end(ctx, j, StatusAborted, CodeAborted, "aborted before it moved", "aborted")
		}
		return
	}
	// Devices left unfinished had a step that could not be saved.
	s.end(ctx, j, StatusDone, CodeSourceFailed, "a step could not be saved", "")
}

func aborted(r *run) bool {
	select {
	case <-r.abort:
		return true
	default:
		return false
	}
}

// end ends the job (finish), logging a failure to save it.
func (s *Service) end(ctx context.Context, j Job, st Status, code int, itemMsg, jobMsg string) {
	if err := s.finish(ctx, j, st, code, itemMsg, jobMsg); err != nil {
		s.log.Error("distribution job: finishing", "jobId", j.JobID, "err", err)
	}
}

// mover moves the devices of one run of a job.
type mover struct {
	s *Service
	j Job

	mu       sync.Mutex
	keys     map[string][]byte       // guarded by mu: destination transit keys
	products map[string]*productCopy // guarded by mu: the product's copy to each destination
}

// productCopy is the product's copy to one destination: the workers
// moving devices there take turns on mu, so it is copied once (a failed
// copy is tried again by the next).
type productCopy struct {
	mu   sync.Mutex
	done bool
}

func (m *mover) moveAll(ctx context.Context, r *run, items []Item) {
	work := make(chan Item)
	var wg sync.WaitGroup
	for range min(m.s.o.Workers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				m.move(ctx, it)
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
		case <-r.abort:
			break feed
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
}

// finishStarted completes devices an abort caught between steps.
func (m *mover) finishStarted(ctx context.Context) {
	after := ""
	for ctx.Err() == nil {
		items, err := m.s.o.Store.JobItems(ctx, m.j.JobID, after, page, true)
		if err != nil || len(items) == 0 {
			return
		}
		after = items[len(items)-1].DeviceName
		for _, it := range items {
			if it.Step > StepPending {
				m.move(ctx, it)
			}
		}
	}
}

func (m *mover) copyProduct(ctx context.Context, instanceID string) error {
	m.mu.Lock()
	pc := m.products[instanceID]
	if pc == nil {
		pc = &productCopy{}
		m.products[instanceID] = pc
	}
	m.mu.Unlock()
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.done {
		return nil
	}
	p, err := m.s.o.Source.ExportProduct(ctx, registry.Principal{AccountID: m.j.AccountID, Role: registry.RoleReadonly}, m.j.ProductKey)
	if err != nil {
		return fmt.Errorf("reading product %s: %w", m.j.ProductKey, err)
	}
	if err := m.s.o.Remote.ImportProduct(ctx, m.s.target(m.j, instanceID), p); err != nil {
		return err
	}
	pc.done = true
	return nil
}

func (m *mover) publicKey(ctx context.Context, instanceID string) ([]byte, error) {
	m.mu.Lock()
	k, ok := m.keys[instanceID]
	m.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := m.s.o.Remote.PublicKey(ctx, m.s.target(m.j, instanceID))
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.keys[instanceID] = k
	m.mu.Unlock()
	return k, nil
}

// move takes one device from its saved step to the end, saving each
// step. When ctx ends it stops without a result, to be resumed.
func (m *mover) move(ctx context.Context, it Item) {
	s, j := m.s, m.j
	code, msg := m.steps(ctx, &it)
	if code != CodeMoved && ctx.Err() != nil {
		return // a failure Close caused: resumed later
	}
	if code == 0 {
		return // a step could not be saved; the item stays unfinished
	}
	it.Step, it.Code, it.Message = StepDone, code, msg
	if err := s.o.Store.PutJobItem(context.WithoutCancel(ctx), it); err != nil {
		s.log.Error("distribution job: saving a device's result", "jobId", j.JobID, "err", err)
		return
	}
	if s.o.Events != nil {
		s.o.Events.DeviceEvent(ctx, j, it)
	}
}

// steps runs the device's remaining steps; it answers the result code
// and message, or 0 when a step was not saved.
func (m *mover) steps(ctx context.Context, it *Item) (int, string) {
	s, j := m.s, m.j
	pk, dn := j.ProductKey, it.DeviceName
	// A step that happened is saved even when Close interrupts the run,
	// so that a resumed run does not repeat it.
	save := func(st Step) bool {
		it.Step = st
		if err := s.o.Store.PutJobItem(context.WithoutCancel(ctx), *it); err != nil {
			if ctx.Err() == nil {
				s.log.Error("distribution job: saving a device's step", "jobId", j.JobID, "err", err)
			}
			return false
		}
		return true
	}
	if it.Step == StepPending {
		if it.TargetInstanceID == "" {
			if j.Strategy == Specified {
				it.TargetInstanceID = j.TargetInstanceID
			} else {
				addr, _ := s.o.Devices.Address(pk, dn)
				id, err := s.o.Directory.ChooseInstance(ctx, j.AccountID, j.PolicyID, pk, dn, addr)
				if err != nil {
					return CodeNotChosen, "the proximity policy chose no instance: " + err.Error()
				}
				it.TargetInstanceID = id
				if !save(StepPending) {
					return 0, ""
				}
			}
		}
		if err := m.copyProduct(ctx, it.TargetInstanceID); err != nil {
			return CodeRemoteFailed, "copying the product failed: " + err.Error()
		}
		secret, err := s.o.Source.DeviceSecret(ctx, pk, dn)
		if errors.Is(err, registry.ErrNotFound) {
			return CodeNotFound, "not registered here"
		} else if err != nil {
			return CodeSourceFailed, "reading the device failed"
		}
		pub, err := m.publicKey(ctx, it.TargetInstanceID)
		if err != nil {
			return CodeRemoteFailed, "the destination's transit key: " + err.Error()
		}
		sealed, err := transit.Seal(s.o.Rand, pub, []byte(secret), transit.AAD(it.TargetInstanceID, pk, dn))
		if err != nil {
			return CodeRemoteFailed, "the destination's transit key: " + err.Error()
		}
		err = s.o.Remote.ImportDevice(ctx, s.target(j, it.TargetInstanceID),
			DeviceImport{ProductKey: pk, DeviceName: dn, SealedSecret: sealed, SourceInstanceID: s.o.Self.ID})
		switch {
		case errors.Is(err, ErrConflict):
			return CodeConflict, "another device of that name is at the destination"
		case err != nil:
			return CodeRemoteFailed, "importing at the destination failed: " + err.Error()
		}
		if !save(StepImported) {
			return 0, ""
		}
	}
	if it.Step == StepImported {
		inst, err := s.o.Directory.Instance(ctx, j.AccountID, it.TargetInstanceID)
		if err != nil {
			return CodeSourceFailed, "the destination instance: " + err.Error()
		}
		now := s.now()
		rec := distribution.Record{ProductKey: pk, DeviceName: dn, AccountID: j.AccountID,
			SourceIotInstanceID: s.o.Self.ID, SourceRegion: s.o.Self.Region,
			TargetIotInstanceID: inst.ID, TargetRegion: inst.Region, JobID: j.JobID, GmtCreate: now, GmtModified: now}
		if old, err := s.o.Records.GetRecord(ctx, pk, dn); err == nil {
			rec.GmtCreate = old.GmtCreate
		}
		if err := s.o.Records.PutRecord(ctx, rec); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("distribution job: updating a provisioning record failed", "jobId", j.JobID, "productKey", pk, "deviceName", dn, "err", err)
			}
			return CodeSourceFailed, "updating the provisioning record failed"
		}
		// Not saved: the record and the mark are idempotent, so a run
		// resumed before the result repeats them from StepImported. This
		// halves the writes per device.
		it.Step = StepRecorded
	}
	if it.Step == StepRecorded {
		if err := s.o.Source.MarkDistributed(ctx, pk, dn, it.TargetInstanceID); err != nil {
			return CodeSourceFailed, "marking the device distributed failed"
		}
		it.Step = StepMarked // not saved either: the result follows
	}
	// StepMarked: refused here from now on; tell it to bootstrap again.
	if err := s.o.Devices.Notify(ctx, pk, dn); err != nil && ctx.Err() == nil {
		s.log.Warn("distribution job: notifying a device failed; it is refused here and bootstraps again on its next connect",
			"jobId", j.JobID, "productKey", pk, "deviceName", dn, "err", err)
	}
	return CodeMoved, ""
}

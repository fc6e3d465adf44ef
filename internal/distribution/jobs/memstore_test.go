package jobs_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/corral-iot/corral/internal/distribution/jobs"
)

// memStore is a jobs.Store in memory, for the service's tests.
type memStore struct {
	mu    sync.Mutex
	jobs  map[string]jobs.Job
	items map[string]map[string]jobs.Item // job id → name → item
	puts  int
}

func newMemStore() *memStore {
	return &memStore{jobs: map[string]jobs.Job{}, items: map[string]map[string]jobs.Item{}}
}

func (m *memStore) CreateJob(_ context.Context, j jobs.Job, names []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.jobs[j.JobID]; ok {
		return fmt.Errorf("job %s: %w", j.JobID, jobs.ErrConflict)
	}
	m.jobs[j.JobID] = j
	its := map[string]jobs.Item{}
	for _, n := range names {
		its[n] = jobs.Item{JobID: j.JobID, DeviceName: n}
	}
	m.items[j.JobID] = its
	return nil
}

func (m *memStore) counted(j jobs.Job) jobs.Job {
	j.Moved, j.Failed = 0, 0
	for _, it := range m.items[j.JobID] {
		switch {
		case it.Code == jobs.CodeMoved:
			j.Moved++
		case it.Code != 0:
			j.Failed++
		}
	}
	if j.Total > 0 {
		j.Progress = (j.Moved + j.Failed) * 100 / j.Total
	}
	return j
}

func (m *memStore) GetJob(_ context.Context, id string) (jobs.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return jobs.Job{}, jobs.ErrNotFound
	}
	return m.counted(j), nil
}

func (m *memStore) list(keep func(jobs.Job) bool) []jobs.Job {
	var out []jobs.Job
	for _, j := range m.jobs {
		if keep(j) {
			out = append(out, m.counted(j))
		}
	}
	slices.SortFunc(out, func(a, b jobs.Job) int { return b.GmtCreate.Compare(a.GmtCreate) })
	return out
}

func (m *memStore) ListJobs(_ context.Context, acc string) ([]jobs.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.list(func(j jobs.Job) bool { return j.AccountID == acc }), nil
}

func (m *memStore) OpenJobs(context.Context) ([]jobs.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.list(func(j jobs.Job) bool { return j.Status.Open() }), nil
}

func (m *memStore) UpdateJob(_ context.Context, j jobs.Job) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.jobs[j.JobID]
	if !ok {
		return jobs.ErrNotFound
	}
	old.Status, old.ProductCopied, old.AbortRequested, old.Message, old.GmtModified = j.Status, j.ProductCopied, j.AbortRequested, j.Message, j.GmtModified
	m.jobs[j.JobID] = old
	return nil
}

func (m *memStore) DeleteJob(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.jobs[id]; !ok {
		return jobs.ErrNotFound
	}
	delete(m.jobs, id)
	delete(m.items, id)
	return nil
}

func (m *memStore) JobItems(_ context.Context, id, after string, limit int, unfinished bool) ([]jobs.Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []jobs.Item
	for _, it := range m.items[id] {
		if it.DeviceName > after && (!unfinished || it.Step < jobs.StepDone) {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b jobs.Item) int { return strings.Compare(a.DeviceName, b.DeviceName) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *memStore) PutJobItem(_ context.Context, it jobs.Item) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	its, ok := m.items[it.JobID]
	if !ok {
		return jobs.ErrNotFound
	}
	its[it.DeviceName] = it
	m.puts++
	return nil
}

func (m *memStore) DevicesInOpenJobs(_ context.Context, pk string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, j := range m.jobs {
		if j.ProductKey == pk && j.Status.Open() {
			for n := range m.items[id] {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

package jobs

import "context"

// Store keeps jobs and their devices. Implementations are safe for
// concurrent use; reads see every write that returned. GetJob and
// ListJobs fill Moved, Failed and Progress from the items.
type Store interface {
	// CreateJob writes a job and one pending item per name, at once.
	CreateJob(ctx context.Context, j Job, names []string) error
	// GetJob answers ErrNotFound for a missing job.
	GetJob(ctx context.Context, id string) (Job, error)
	// ListJobs lists an account's jobs, newest first.
	ListJobs(ctx context.Context, accountID string) ([]Job, error)
	// OpenJobs lists every initializing or running job (to resume them).
	OpenJobs(ctx context.Context) ([]Job, error)
	// UpdateJob writes a job's Status, ProductCopied, AbortRequested,
	// Message and GmtModified.
	UpdateJob(ctx context.Context, j Job) error
	// DeleteJob deletes a job and its items; ErrNotFound for a missing one.
	DeleteJob(ctx context.Context, id string) error
	// JobItems lists a job's items by DeviceName after after; unfinished
	// only lists those before StepDone.
	JobItems(ctx context.Context, jobID, after string, limit int, unfinished bool) ([]Item, error)
	// PutJobItem writes an item's TargetInstanceID, Step, Code and Message.
	PutJobItem(ctx context.Context, it Item) error
	// DevicesInOpenJobs lists the names of a product's devices that are items
	// of an open job.
	DevicesInOpenJobs(ctx context.Context, pk string) ([]string, error)
}

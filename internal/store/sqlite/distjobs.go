package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/corral-iot/corral/internal/distribution/jobs"
)

// The jobs.Store port (migration 00020). A job and its items are written
// in one transaction; each item's step is one group-committed write.

// stepDone is jobs.StepDone as the queries and the partial index write
// it (step < 4); the array type fails to compile when they differ.
var _ [0]struct{} = [jobs.StepDone - 4]struct{}{}

const jobCols = `j.id, j.account_id, j.product_key, j.source_instance, j.strategy, j.target_instance, j.policy_id,
	j.target_account, j.auth_code, j.status, j.product_copied, j.abort_requested, j.total, j.message, j.created_at, j.modified_at,
	(SELECT count(*) FROM dist_job_items i WHERE i.job_id = j.id AND i.code = 200),
	(SELECT count(*) FROM dist_job_items i WHERE i.job_id = j.id AND i.code NOT IN (0, 200))`

func scanJob(sc interface{ Scan(...any) error }) (jobs.Job, error) {
	var j jobs.Job
	var c, m int64
	err := sc.Scan(&j.JobID, &j.AccountID, &j.ProductKey, &j.SourceInstanceID, &j.Strategy, &j.TargetInstanceID, &j.PolicyID,
		&j.TargetAccountID, &j.AuthCode, &j.Status, &j.ProductCopied, &j.AbortRequested, &j.Total, &j.Message, &c, &m, &j.Moved, &j.Failed)
	j.GmtCreate, j.GmtModified = fromMS(c), fromMS(m)
	if j.Total > 0 {
		j.Progress = (j.Moved + j.Failed) * 100 / j.Total
	}
	return j, err
}

// CreateJob implements jobs.Store.
func (s *Store) CreateJob(ctx context.Context, j jobs.Job, names []string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO dist_jobs(id, account_id, product_key, source_instance, strategy, target_instance,
			policy_id, target_account, auth_code, status, product_copied, abort_requested, total, message, created_at, modified_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.JobID, j.AccountID, j.ProductKey, j.SourceInstanceID, j.Strategy, j.TargetInstanceID, j.PolicyID, j.TargetAccountID,
			j.AuthCode, j.Status, j.ProductCopied, j.AbortRequested, len(names), j.Message, ms(j.GmtCreate), ms(j.GmtModified))
		if isUnique(err) {
			return fmt.Errorf("job %s: %w", j.JobID, jobs.ErrConflict)
		}
		if err != nil {
			return err
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO dist_job_items(job_id, device_name, target_instance, step, code, message)
			VALUES (?, ?, '', 0, 0, '')`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, n := range names {
			if _, err := st.ExecContext(ctx, j.JobID, n); err != nil {
				return fmt.Errorf("job item %s: %w", n, err)
			}
		}
		return nil
	})
}

// GetJob implements jobs.Store.
func (s *Store) GetJob(ctx context.Context, id string) (jobs.Job, error) {
	j, err := scanJob(s.queryRow(ctx, `SELECT `+jobCols+` FROM dist_jobs j WHERE j.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return j, jobs.ErrNotFound
	}
	return j, err
}

func (s *Store) listJobs(ctx context.Context, where string, args ...any) ([]jobs.Job, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+jobCols+` FROM dist_jobs j WHERE `+where+` ORDER BY j.created_at DESC, j.id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []jobs.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// ListJobs implements jobs.Store.
func (s *Store) ListJobs(ctx context.Context, accountID string) ([]jobs.Job, error) {
	return s.listJobs(ctx, `j.account_id = ?`, accountID)
}

// OpenJobs implements jobs.Store.
func (s *Store) OpenJobs(ctx context.Context) ([]jobs.Job, error) {
	return s.listJobs(ctx, `j.status < 2`)
}

// UpdateJob implements jobs.Store.
func (s *Store) UpdateJob(ctx context.Context, j jobs.Job) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE dist_jobs SET status = ?, product_copied = ?, abort_requested = ?, message = ?, modified_at = ?
			WHERE id = ?`, j.Status, j.ProductCopied, j.AbortRequested, j.Message, ms(j.GmtModified), j.JobID)
		return jobAffected(res, err, "job "+j.JobID)
	})
}

// DeleteJob implements jobs.Store (its items go with it).
func (s *Store) DeleteJob(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM dist_jobs WHERE id = ?`, id)
		return jobAffected(res, err, "job "+id)
	})
}

func jobAffected(res sql.Result, err error, what string) error {
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%s: %w", what, jobs.ErrNotFound)
	}
	return nil
}

// JobItems implements jobs.Store.
func (s *Store) JobItems(ctx context.Context, jobID, after string, limit int, unfinished bool) ([]jobs.Item, error) {
	q := `SELECT job_id, device_name, target_instance, step, code, message FROM dist_job_items WHERE job_id = ? AND device_name > ?`
	if unfinished {
		q += ` AND step < 4`
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY device_name LIMIT ?`, jobID, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []jobs.Item{}
	for rows.Next() {
		var it jobs.Item
		if err := rows.Scan(&it.JobID, &it.DeviceName, &it.TargetInstanceID, &it.Step, &it.Code, &it.Message); err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// PutJobItem implements jobs.Store.
func (s *Store) PutJobItem(ctx context.Context, it jobs.Item) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE dist_job_items SET target_instance = ?, step = ?, code = ?, message = ?
			WHERE job_id = ? AND device_name = ?`, it.TargetInstanceID, it.Step, it.Code, it.Message, it.JobID, it.DeviceName)
		return jobAffected(res, err, "job item "+it.DeviceName)
	})
}

// DevicesInOpenJobs implements jobs.Store.
func (s *Store) DevicesInOpenJobs(ctx context.Context, pk string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT i.device_name FROM dist_job_items i JOIN dist_jobs j ON j.id = i.job_id
		WHERE j.product_key = ? AND j.status < 2`, pk)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

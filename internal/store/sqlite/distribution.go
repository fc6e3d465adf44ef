package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/corral-iot/corral/internal/distribution"
)

// The distribution.Store port. Writes go through the group-committing
// writer, each check and write in one transaction.

const instanceCols = `account_id, id, name, region, mqtt, mqtts, backup_ip, api_url, credential, created_at, modified_at`

func scanInstance(sc interface{ Scan(...any) error }) (distribution.StoredInstance, error) {
	var in distribution.StoredInstance
	var c, m int64
	err := sc.Scan(&in.AccountID, &in.ID, &in.Name, &in.Region, &in.MQTT, &in.MQTTS, &in.BackupIP, &in.APIURL, &in.SealedCredential, &c, &m)
	in.GmtCreate, in.GmtModified = fromMS(c), fromMS(m)
	in.HasCredential = len(in.SealedCredential) > 0
	return in, err
}

// PutInstance implements distribution.InstanceStore.
func (s *Store) PutInstance(ctx context.Context, in distribution.StoredInstance, replace bool) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		q := `INSERT INTO dist_instances(` + instanceCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
		if replace {
			q += ` ON CONFLICT(account_id, id) DO UPDATE SET name = excluded.name, region = excluded.region, mqtt = excluded.mqtt,
				mqtts = excluded.mqtts, backup_ip = excluded.backup_ip, api_url = excluded.api_url, credential = excluded.credential,
				modified_at = excluded.modified_at`
		}
		_, err := tx.ExecContext(ctx, q, in.AccountID, in.ID, in.Name, in.Region, in.MQTT, in.MQTTS, in.BackupIP, in.APIURL,
			in.SealedCredential, ms(in.GmtCreate), ms(in.GmtModified))
		if isUnique(err) {
			return fmt.Errorf("the id is taken: %w", distribution.ErrConflict)
		}
		return err
	})
}

// GetInstance implements distribution.InstanceStore.
func (s *Store) GetInstance(ctx context.Context, accountID, id string) (distribution.StoredInstance, error) {
	in, err := scanInstance(s.queryRow(ctx, `SELECT `+instanceCols+` FROM dist_instances WHERE account_id = ? AND id = ?`, accountID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return in, distribution.ErrNotFound
	}
	return in, err
}

// ListInstances implements distribution.InstanceStore.
func (s *Store) ListInstances(ctx context.Context, accountID string) ([]distribution.StoredInstance, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+instanceCols+` FROM dist_instances WHERE account_id = ? ORDER BY id`, accountID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []distribution.StoredInstance{}
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// DeleteInstance implements distribution.InstanceStore: an instance a
// record or policy names stays (a system instance: any account's).
func (s *Store) DeleteInstance(ctx context.Context, accountID, id string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM dist_records WHERE target_instance = ? AND (account_id = ? OR ? = '')`,
			id, accountID, accountID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%d provisioning records name it: %w", n, distribution.ErrConflict)
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, doc FROM dist_policies WHERE account_id = ? OR ? = ''`, accountID, accountID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var pid, doc string
			if err := rows.Scan(&pid, &doc); err != nil {
				return err
			}
			var p distribution.Policy
			if err := json.Unmarshal([]byte(doc), &p); err != nil {
				return fmt.Errorf("policy %s: %w", pid, err)
			}
			for _, r := range p.Regions {
				for _, t := range r.Instances {
					if t.InstanceID == id {
						return fmt.Errorf("policy %s names it: %w", pid, distribution.ErrConflict)
					}
				}
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM dist_instances WHERE account_id = ? AND id = ?`, accountID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return distribution.ErrNotFound
		}
		return nil
	})
}

const recordCols = `product_key, device_name, account_id, source_instance, source_region, target_instance, target_region, policy_id, job_id, created_at, modified_at`

func scanRecord(sc interface{ Scan(...any) error }) (distribution.Record, error) {
	var r distribution.Record
	var c, m int64
	err := sc.Scan(&r.ProductKey, &r.DeviceName, &r.AccountID, &r.SourceIotInstanceID, &r.SourceRegion, &r.TargetIotInstanceID,
		&r.TargetRegion, &r.PolicyID, &r.JobID, &c, &m)
	r.GmtCreate, r.GmtModified = fromMS(c), fromMS(m)
	return r, err
}

// PutRecord implements distribution.RecordStore.
func (s *Store) PutRecord(ctx context.Context, r distribution.Record) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO dist_records(`+recordCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(product_key, device_name) DO UPDATE SET account_id = excluded.account_id, source_instance = excluded.source_instance,
			source_region = excluded.source_region, target_instance = excluded.target_instance, target_region = excluded.target_region,
			policy_id = excluded.policy_id, job_id = excluded.job_id, modified_at = excluded.modified_at`,
			r.ProductKey, r.DeviceName, r.AccountID, r.SourceIotInstanceID, r.SourceRegion, r.TargetIotInstanceID, r.TargetRegion,
			r.PolicyID, r.JobID, ms(r.GmtCreate), ms(r.GmtModified))
		return err
	})
}

// GetRecord implements distribution.RecordStore.
func (s *Store) GetRecord(ctx context.Context, pk, dn string) (distribution.Record, error) {
	r, err := scanRecord(s.queryRow(ctx, `SELECT `+recordCols+` FROM dist_records WHERE product_key = ? AND device_name = ?`, pk, dn))
	if errors.Is(err, sql.ErrNoRows) {
		return r, distribution.ErrNotFound
	}
	return r, err
}

// ListRecords implements distribution.RecordStore.
func (s *Store) ListRecords(ctx context.Context, pk, after string, limit int) ([]distribution.Record, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+recordCols+` FROM dist_records WHERE product_key = ? AND device_name > ? ORDER BY device_name LIMIT ?`,
		pk, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []distribution.Record{}
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeleteRecord implements distribution.RecordStore.
func (s *Store) DeleteRecord(ctx context.Context, pk, dn string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM dist_records WHERE product_key = ? AND device_name = ?`, pk, dn)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return distribution.ErrNotFound
		}
		return nil
	})
}

// PutPolicy implements distribution.PolicyStore.
func (s *Store) PutPolicy(ctx context.Context, p distribution.Policy, replace bool) error {
	doc, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		q := `INSERT INTO dist_policies(account_id, id, doc, created_at, modified_at) VALUES (?, ?, ?, ?, ?)`
		if replace {
			q += ` ON CONFLICT(account_id, id) DO UPDATE SET doc = excluded.doc, modified_at = excluded.modified_at`
		}
		_, err := tx.ExecContext(ctx, q, p.AccountID, p.ID, string(doc), ms(p.GmtCreate), ms(p.GmtModified))
		if isUnique(err) {
			return fmt.Errorf("the id is taken: %w", distribution.ErrConflict)
		}
		return err
	})
}

func decodePolicy(accountID, doc string, c, m int64) (distribution.Policy, error) {
	var p distribution.Policy
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return p, fmt.Errorf("decoding policy: %w", err)
	}
	p.AccountID, p.GmtCreate, p.GmtModified = accountID, fromMS(c), fromMS(m)
	return p, nil
}

// GetPolicy implements distribution.PolicyStore.
func (s *Store) GetPolicy(ctx context.Context, accountID, id string) (distribution.Policy, error) {
	var doc string
	var c, m int64
	err := s.queryRow(ctx, `SELECT doc, created_at, modified_at FROM dist_policies WHERE account_id = ? AND id = ?`, accountID, id).Scan(&doc, &c, &m)
	if errors.Is(err, sql.ErrNoRows) {
		return distribution.Policy{}, distribution.ErrNotFound
	}
	if err != nil {
		return distribution.Policy{}, err
	}
	return decodePolicy(accountID, doc, c, m)
}

// ListPolicies implements distribution.PolicyStore.
func (s *Store) ListPolicies(ctx context.Context, accountID string) ([]distribution.Policy, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT doc, created_at, modified_at FROM dist_policies WHERE account_id = ? ORDER BY id`, accountID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []distribution.Policy{}
	for rows.Next() {
		var doc string
		var c, m int64
		if err := rows.Scan(&doc, &c, &m); err != nil {
			return nil, err
		}
		p, err := decodePolicy(accountID, doc, c, m)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeletePolicy implements distribution.PolicyStore.
func (s *Store) DeletePolicy(ctx context.Context, accountID, id string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM dist_records WHERE account_id = ? AND policy_id = ?`, accountID, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%d provisioning records name it: %w", n, distribution.ErrConflict)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM dist_policies WHERE account_id = ? AND id = ?`, accountID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return distribution.ErrNotFound
		}
		return nil
	})
}

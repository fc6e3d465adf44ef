package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/registry"
)

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func msPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func attrsJSON(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func parseAttrs(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decoding attributes: %w", err)
	}
	return m, nil
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return registry.ErrNotFound
	}
	return err
}

// --- accounts ---

// CreateAccount implements registry.Store.
func (s *Store) CreateAccount(ctx context.Context, a registry.Account) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO accounts(id, name, created_at) VALUES (?, ?, ?)`, a.ID, a.Name, ms(a.CreatedAt))
	if isUnique(err) {
		return fmt.Errorf("account %q: %w", a.ID, registry.ErrConflict)
	}
	return err
}

// GetAccount implements registry.Store.
func (s *Store) GetAccount(ctx context.Context, id string) (registry.Account, error) {
	var a registry.Account
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT id, name, created_at FROM accounts WHERE id = ?`, id).Scan(&a.ID, &a.Name, &created)
	a.CreatedAt = fromMS(created)
	return a, notFound(err)
}

// ListAccounts implements registry.Store.
func (s *Store) ListAccounts(ctx context.Context) ([]registry.Account, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, name, created_at FROM accounts ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []registry.Account{}
	for rows.Next() {
		var a registry.Account
		var created int64
		if err := rows.Scan(&a.ID, &a.Name, &created); err != nil {
			return nil, err
		}
		a.CreatedAt = fromMS(created)
		out = append(out, a)
	}
	return out, rows.Err()
}

// --- products ---

const productCols = `product_key, account_id, name, description, node_type, auth_type, dyn_reg, attributes, created_at, connect_window, provisioning, topic_classes, distributed_from`

func scanProduct(sc interface{ Scan(...any) error }, extra ...any) (registry.Product, error) {
	var p registry.Product
	var attrs, prov, topics string
	var created int64
	dest := append([]any{&p.ProductKey, &p.AccountID, &p.Name, &p.Description, &p.NodeType, &p.AuthType, &p.DynReg, &attrs, &created, &p.ConnectWindow, &prov, &topics, &p.DistributedFrom}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(prov), &p.Provisioning); err != nil {
		return p, fmt.Errorf("decoding provisioning settings: %w", err)
	}
	var err error
	if p.TopicClasses, err = parseTopicClasses(topics); err != nil {
		return p, err
	}
	p.CreatedAt = fromMS(created)
	p.Attributes, err = parseAttrs(attrs)
	return p, err
}

// CreateProduct implements registry.Store.
func (s *Store) CreateProduct(ctx context.Context, p registry.Product, sealed []byte) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO products(`+productCols+`, secret) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ProductKey, p.AccountID, p.Name, p.Description, p.NodeType, p.AuthType, p.DynReg, attrsJSON(p.Attributes), ms(p.CreatedAt), p.ConnectWindow, provJSON(p.Provisioning), topicClassesJSON(p.TopicClasses), p.DistributedFrom, sealed)
	if isUnique(err) {
		return fmt.Errorf("product %q: %w", p.ProductKey, registry.ErrConflict)
	}
	return err
}

// GetProduct implements registry.Store.
func (s *Store) GetProduct(ctx context.Context, pk string) (registry.Product, []byte, error) {
	var sealed []byte
	p, err := scanProduct(s.queryRow(ctx, `SELECT `+productCols+`, secret FROM products WHERE product_key = ?`, pk), &sealed)
	return p, sealed, notFound(err)
}

// ListProducts implements registry.Store.
func (s *Store) ListProducts(ctx context.Context, account, after string, limit int) ([]registry.Product, error) {
	return list(ctx, s.r, func(r *sql.Rows) (registry.Product, error) { return scanProduct(r) }, `SELECT `+productCols+` FROM products WHERE account_id = ? AND product_key > ? ORDER BY product_key LIMIT ?`, account, after, limit)
}

// UpdateProduct implements registry.Store.
func (s *Store) UpdateProduct(ctx context.Context, p registry.Product) error {
	res, err := s.w.ExecContext(ctx, `UPDATE products SET name = ?, description = ?, auth_type = ?, dyn_reg = ?, attributes = ?, connect_window = ?, provisioning = ? WHERE product_key = ?`,
		p.Name, p.Description, p.AuthType, p.DynReg, attrsJSON(p.Attributes), p.ConnectWindow, provJSON(p.Provisioning), p.ProductKey)
	return affected(res, err)
}

// UpdateTopicClasses implements registry.TopicClassStore: the read and the
// write are one transaction on the writer connection.
func (s *Store) UpdateTopicClasses(ctx context.Context, pk string, fn func([]registry.TopicClass) ([]registry.TopicClass, error)) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var raw string
	if err := tx.QueryRowContext(ctx, `SELECT topic_classes FROM products WHERE product_key = ?`, pk).Scan(&raw); err != nil {
		return notFound(err)
	}
	cur, err := parseTopicClasses(raw)
	if err != nil {
		return err
	}
	next, err := fn(cur)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE products SET topic_classes = ? WHERE product_key = ?`, topicClassesJSON(next), pk); err != nil {
		return err
	}
	return tx.Commit()
}

func topicClassesJSON(cs []registry.TopicClass) string {
	if len(cs) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(cs)
	return string(b)
}

// parseTopicClasses decodes stored classes, never to a nil slice: nil
// would mean "no classes stored" to the broker.
func parseTopicClasses(s string) ([]registry.TopicClass, error) {
	cs := []registry.TopicClass{}
	if err := json.Unmarshal([]byte(s), &cs); err != nil {
		return nil, fmt.Errorf("decoding topic classes: %w", err)
	}
	if cs == nil {
		cs = []registry.TopicClass{}
	}
	return cs, nil
}

// DeleteProduct implements registry.Store.
func (s *Store) DeleteProduct(ctx context.Context, pk string) error {
	// (begin runs now, end when DeleteProduct returns.)
	defer s.auth.end(func(c *authCache, _ bool) { c.each(func(k authKey, _ *authRow) bool { return k.pk != pk }) }, s.auth.begin())
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, keepRandomsSQL+`WHERE product_key = ? AND reg_random IS NOT NULL ON CONFLICT DO NOTHING`, pk); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE product_key = ?`, pk); err != nil {
		return err
	}
	for _, q := range []string{`DELETE FROM device_properties WHERE product_key = ?`, `DELETE FROM device_desired WHERE product_key = ?`, `DELETE FROM product_configs WHERE product_key = ?`,
		`DELETE FROM shadow_log WHERE id IN (SELECT j.value FROM shadows s, json_each(s.past) j WHERE s.product_key = ?)`,
		`DELETE FROM shadows WHERE product_key = ?`, `DELETE FROM shadow_settings WHERE product_key = ?`} {
		if _, err := tx.ExecContext(ctx, q, pk); err != nil {
			return err
		}
	}
	// Sub-devices of other products lose gateways of this one: gateway keys
	// "{pk}/…" lie between "{pk}/" and "{pk}0" ('0' follows '/'), a range
	// the partial gateway index answers without scanning every device.
	if _, err := tx.ExecContext(ctx, `UPDATE devices SET gateway = '' WHERE gateway <> '' AND gateway >= ? AND gateway < ?`, pk+"/", pk+"0"); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM found_subdevices WHERE gateway >= ? AND gateway < ?`, pk+"/", pk+"0"); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM products WHERE product_key = ?`, pk)
	if err := affected(res, err); err != nil {
		return err
	}
	return tx.Commit()
}

func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return registry.ErrNotFound
	}
	return nil
}

// --- devices ---

const deviceCols = `product_key, device_name, account_id, iot_id, secret, nickname, status, attributes, secret_issued, created_at, first_online, last_online, cert_fingerprint, gateway, thing_name`

func scanDevice(sc interface{ Scan(...any) error }) (registry.Device, error) {
	var d registry.Device
	var attrs string
	var created int64
	var first, last sql.NullInt64
	var fp, thing sql.NullString
	if err := sc.Scan(&d.ProductKey, &d.DeviceName, &d.AccountID, &d.IotID, &d.SealedSecret, &d.Nickname, &d.Status, &attrs, &d.SecretIssued, &created, &first, &last, &fp, &d.Gateway, &thing); err != nil {
		return d, err
	}
	d.ThingName = thingOf(d.ProductKey, d.DeviceName, thing)
	d.CreatedAt = fromMS(created)
	d.FirstOnline, d.LastOnline = fromNullMS(first), fromNullMS(last)
	d.CertFingerprint = fp.String
	var err error
	d.Attributes, err = parseAttrs(attrs)
	return d, err
}

// CreateDevices implements registry.Store: all or nothing.
func (s *Store) CreateDevices(ctx context.Context, ds []registry.Device) error {
	ins, err := s.wprep(ctx, `INSERT INTO devices(`+deviceCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	began := s.auth.begin()
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := insertDevices(ctx, tx.StmtContext(ctx, ins), ds)
		return err
	})
	// The rows just written are cached as written, unless another write to
	// devices overlapped this one (presence may have changed them since).
	s.auth.end(func(c *authCache, alone bool) {
		for _, d := range ds {
			if err != nil || !alone {
				c.forget(d.ProductKey, d.DeviceName)
				continue
			}
			c.put(d.ProductKey, d.DeviceName, authRow{account: d.AccountID, status: d.Status, thing: registry.ExplicitThingName(d),
				sealed: append([]byte(nil), d.SealedSecret...)})
		}
	}, began)
	return err
}

// CreateRegisteredDevice implements registry.ProvisioningStore. The random
// is kept in the new device's row, and the randoms table (those of
// re-registrations and of deleted devices) is only read, in the same
// statement: one statement, so a new device costs no more than before.
func (s *Store) CreateRegisteredDevice(ctx context.Context, d registry.Device, random string, at, since time.Time) error {
	ins, err := s.wprep(ctx, `INSERT INTO devices(`+deviceCols+`, reg_random, reg_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
		WHERE NOT EXISTS (SELECT 1 FROM registration_randoms WHERE product_key = ? AND device_name = ? AND random = ? AND used_at >= ?)`)
	if err != nil {
		return err
	}
	var n int64
	defer s.auth.end(forgetting(d.ProductKey, d.DeviceName), s.auth.begin())
	err = s.writeOne(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = insertDevices(ctx, tx.StmtContext(ctx, ins), []registry.Device{d}, random, ms(at), d.ProductKey, d.DeviceName, random, ms(since))
		return err
	})
	if err == nil && n == 0 {
		return fmt.Errorf("device %q: %w", d.DeviceName, registry.ErrReplayed)
	}
	return err
}

// insertDevices runs the device insert for each device; extra are the
// values of columns the statement has beyond deviceCols.
func insertDevices(ctx context.Context, stmt *sql.Stmt, ds []registry.Device, extra ...any) (inserted int64, err error) {
	for _, d := range ds {
		res, err := stmt.ExecContext(ctx, append([]any{d.ProductKey, d.DeviceName, d.AccountID, d.IotID, d.SealedSecret, d.Nickname, d.Status,
			attrsJSON(d.Attributes), d.SecretIssued, ms(d.CreatedAt), msPtr(d.FirstOnline), msPtr(d.LastOnline), nullString(d.CertFingerprint), d.Gateway,
			nullString(registry.ExplicitThingName(d))}, extra...)...)
		if isUnique(err) {
			if strings.Contains(err.Error(), "thing_name") {
				return inserted, fmt.Errorf("thing name %q of device %q is taken: %w", d.ThingName, d.DeviceName, registry.ErrConflict)
			}
			if strings.Contains(err.Error(), "cert_fingerprint") {
				return inserted, fmt.Errorf("certificate of device %q is bound to another device: %w", d.DeviceName, registry.ErrConflict)
			}
			if strings.Contains(err.Error(), "iot_id") {
				return inserted, fmt.Errorf("iotId of device %q: %w", d.DeviceName, registry.ErrConflict)
			}
			return inserted, fmt.Errorf("device %q: %w", d.DeviceName, registry.ErrConflict)
		}
		if err != nil {
			return inserted, fmt.Errorf("device %q: %w", d.DeviceName, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return inserted, err
		}
		inserted += n
	}
	return inserted, nil
}

// GetDevice implements registry.Store.
func (s *Store) GetDevice(ctx context.Context, pk, dn string) (registry.Device, error) {
	d, err := scanDevice(s.queryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE product_key = ? AND device_name = ?`, pk, dn))
	return d, notFound(err)
}

// ListDevices implements registry.Store.
func (s *Store) ListDevices(ctx context.Context, f registry.DeviceFilter) ([]registry.Device, error) {
	q := `SELECT ` + deviceCols + ` FROM devices WHERE product_key = ? AND device_name > ?`
	args := []any{f.ProductKey, f.After}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	if f.NamePrefix != "" {
		// LIKE (its wildcards escaped) can use the index; it ignores ASCII
		// case, so the exact prefix is compared as well.
		q += ` AND device_name LIKE ? ESCAPE '\' AND substr(device_name, 1, ?) = ?`
		args = append(args, likePrefix(f.NamePrefix), utf8.RuneCountInString(f.NamePrefix), f.NamePrefix)
	}
	if f.AttrKey != "" {
		// keys are validated to [A-Za-z0-9_.-], so quoting them in the path is safe
		q += ` AND json_extract(attributes, '$."' || ? || '"') = ?`
		args = append(args, f.AttrKey, f.AttrValue)
	}
	q += ` ORDER BY device_name LIMIT ?`
	args = append(args, f.Limit)
	return list(ctx, s.r, func(r *sql.Rows) (registry.Device, error) { return scanDevice(r) }, q, args...)
}

// UpdateDevice implements registry.Store.
func (s *Store) UpdateDevice(ctx context.Context, d registry.Device) error {
	defer s.auth.end(forgetting(d.ProductKey, d.DeviceName), s.auth.begin())
	res, err := s.exec(ctx, `UPDATE devices SET nickname = ?, attributes = ?, secret_issued = ?, cert_fingerprint = ?, thing_name = ? WHERE product_key = ? AND device_name = ?`,
		d.Nickname, attrsJSON(d.Attributes), d.SecretIssued, nullString(d.CertFingerprint), nullString(registry.ExplicitThingName(d)), d.ProductKey, d.DeviceName)
	if isUnique(err) {
		if strings.Contains(err.Error(), "thing_name") {
			return fmt.Errorf("thing name %q is taken: %w", d.ThingName, registry.ErrConflict)
		}
		return fmt.Errorf("certificate is bound to another device: %w", registry.ErrConflict)
	}
	return affected(res, err)
}

// SetDeviceDisabled implements registry.Store.
func (s *Store) SetDeviceDisabled(ctx context.Context, pk, dn string, disabled bool) (registry.Status, error) {
	q := `UPDATE devices SET status = 'disabled' WHERE product_key = ? AND device_name = ? RETURNING status`
	if !disabled {
		q = `UPDATE devices SET status = CASE WHEN status <> 'disabled' THEN status
			WHEN first_online IS NULL THEN 'inactive' ELSE 'offline' END
			WHERE product_key = ? AND device_name = ? RETURNING status`
	}
	var st registry.Status
	defer s.auth.end(forgetting(pk, dn), s.auth.begin())
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, q, pk, dn).Scan(&st)
	})
	return st, notFound(err)
}

// GetDeviceAuth implements registry.Store.
// Rows are served from the auth cache (authcache.go) when there.
func (s *Store) GetDeviceAuth(ctx context.Context, pk, dn string) (registry.Device, error) {
	if err := ctx.Err(); err != nil {
		return registry.Device{}, err
	}
	if r, ok := s.auth.get(pk, dn); ok {
		return r.device(pk, dn), nil
	}
	seq, cache := s.auth.mark()
	d := registry.Device{ProductKey: pk, DeviceName: dn}
	var thing sql.NullString
	err := s.queryRow(ctx, `SELECT account_id, status, secret, thing_name, distributed_to FROM devices WHERE product_key = ? AND device_name = ?`, pk, dn).
		Scan(&d.AccountID, &d.Status, &d.SealedSecret, &thing, &d.DistributedTo)
	d.ThingName = thingOf(pk, dn, thing)
	if err == nil && cache {
		s.auth.fill(pk, dn, authRow{account: d.AccountID, thing: thing.String, to: d.DistributedTo, status: d.Status,
			sealed: append([]byte(nil), d.SealedSecret...)}, seq)
	}
	return d, notFound(err)
}

// thingOf is a device's effective thing name from its column.
func thingOf(pk, dn string, explicit sql.NullString) string {
	if explicit.Valid && explicit.String != "" {
		return explicit.String
	}
	return registry.DefaultThingName(pk, dn)
}

// GetDeviceByThingName implements registry.Store.
func (s *Store) GetDeviceByThingName(ctx context.Context, name string) (registry.Device, error) {
	d, err := scanDevice(s.queryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE thing_name = ?`, name))
	return d, notFound(err)
}

// GetDeviceByFingerprint implements registry.Store.
func (s *Store) GetDeviceByFingerprint(ctx context.Context, fp string) (registry.Device, error) {
	d, err := scanDevice(s.queryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE cert_fingerprint = ?`, fp))
	return d, notFound(err)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// DeleteDevice implements registry.Store.
func (s *Store) DeleteDevice(ctx context.Context, pk, dn string) error {
	defer s.auth.end(forgetting(pk, dn), s.auth.begin())
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, keepRandomsSQL+`WHERE product_key = ? AND device_name = ? AND reg_random IS NOT NULL ON CONFLICT DO NOTHING`, pk, dn); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE product_key = ? AND device_name = ?`, pk, dn)
		if err := affected(res, err); err != nil {
			return err
		}
		// Its property, desired and shadow values go with it: a device made
		// again under the name starts with none.
		for _, q := range []string{`DELETE FROM device_properties WHERE product_key = ? AND device_name = ?`, `DELETE FROM device_desired WHERE product_key = ? AND device_name = ?`,
			`DELETE FROM shadow_log WHERE id IN (SELECT j.value FROM shadows s, json_each(s.past) j WHERE s.product_key = ? AND s.device_name = ?)`,
			`DELETE FROM shadows WHERE product_key = ? AND device_name = ?`} {
			if _, err := tx.ExecContext(ctx, q, pk, dn); err != nil {
				return err
			}
		}
		// A deleted gateway's sub-devices are no longer attached to it, and
		// what it found goes.
		if _, err := tx.ExecContext(ctx, `DELETE FROM found_subdevices WHERE gateway = ?`, registry.GatewayKey(pk, dn)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE devices SET gateway = '' WHERE gateway = ?`, registry.GatewayKey(pk, dn))
		return err
	})
}

// --- API keys ---

const keyCols = `id, account_id, name, role, system_admin, hash, created_at`

func scanKey(sc interface{ Scan(...any) error }) (registry.APIKey, error) {
	var k registry.APIKey
	var created int64
	err := sc.Scan(&k.ID, &k.AccountID, &k.Name, &k.Role, &k.SystemAdmin, &k.Hash, &created)
	k.CreatedAt = fromMS(created)
	return k, err
}

// CreateAPIKey implements registry.Store.
func (s *Store) CreateAPIKey(ctx context.Context, k registry.APIKey) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO api_keys(`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.AccountID, k.Name, k.Role, k.SystemAdmin, k.Hash, ms(k.CreatedAt))
	if isUnique(err) {
		return fmt.Errorf("API key %q: %w", k.ID, registry.ErrConflict)
	}
	return err
}

// GetAPIKey implements registry.Store.
func (s *Store) GetAPIKey(ctx context.Context, id string) (registry.APIKey, error) {
	k, err := scanKey(s.queryRow(ctx, `SELECT `+keyCols+` FROM api_keys WHERE id = ?`, id))
	return k, notFound(err)
}

// ListAPIKeys implements registry.Store.
func (s *Store) ListAPIKeys(ctx context.Context, account string) ([]registry.APIKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+keyCols+` FROM api_keys WHERE account_id = ? ORDER BY created_at, id`, account)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []registry.APIKey{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		k.Hash = nil
		out = append(out, k)
	}
	return out, rows.Err()
}

// DeleteAPIKey implements registry.Store.
func (s *Store) DeleteAPIKey(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if err := keepAdmin(ctx, tx, id, ""); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM api_keys WHERE id = ?`, id)
		return affected(res, err)
	})
}

// SetAPIKeyRole implements registry.Store.
func (s *Store) SetAPIKeyRole(ctx context.Context, id string, role registry.Role) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if err := keepAdmin(ctx, tx, id, role); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET role = ? WHERE id = ?`, role, id)
		return affected(res, err)
	})
}

// keepAdmin refuses to take key id's admin role away (deleting it, or
// giving it role to; "" for a delete) when it is its account's last admin
// key. It runs in the writing transaction, so two admins removing each
// other cannot both succeed.
func keepAdmin(ctx context.Context, tx *sql.Tx, id string, to registry.Role) error {
	if to == registry.RoleAdmin {
		return nil
	}
	var others int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM api_keys o JOIN api_keys k ON o.account_id = k.account_id
		WHERE k.id = ? AND k.role = ? AND o.role = ? AND o.id <> k.id`, id, registry.RoleAdmin, registry.RoleAdmin).Scan(&others)
	if err != nil {
		return err
	}
	if others > 0 {
		return nil
	}
	var role registry.Role
	err = tx.QueryRowContext(ctx, `SELECT role FROM api_keys WHERE id = ?`, id).Scan(&role)
	if err != nil {
		return notFound(err)
	}
	if role == registry.RoleAdmin {
		return registry.ErrLastAdmin
	}
	return nil
}

// Stats implements registry.Store.
func (s *Store) Stats(ctx context.Context) (registry.Stats, error) {
	var st registry.Stats
	err := s.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM products), (SELECT count(*) FROM devices), (SELECT count(*) FROM api_keys)`).
		Scan(&st.Accounts, &st.Products, &st.Devices, &st.APIKeys)
	return st, err
}

// --- audit ---

// AppendAudit implements audit.Store. Entries ride in the next group
// commit without making the caller wait for it: an answer never waits on
// its audit entry's fsync.
func (s *Store) AppendAudit(ctx context.Context, e audit.Entry) error {
	ins, err := s.wprep(ctx, `INSERT INTO audit(at, account_id, actor, action, target, outcome, reason, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	return s.writeAsync(func(tx *sql.Tx) error {
		_, err := tx.Stmt(ins).Exec(ms(e.At), e.AccountID, e.Actor, e.Action, e.Target, e.Outcome, e.Reason, e.Source)
		return err
	})
}

// AddAudit implements audit.AggregateStore: one row per key, whose count
// grows; asynchronous like AppendAudit.
func (s *Store) AddAudit(ctx context.Context, key string, e audit.Entry) error {
	up, err := s.wprep(ctx, `INSERT INTO audit(at, account_id, actor, action, target, outcome, reason, source, count, agg_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(agg_key) WHERE agg_key IS NOT NULL DO UPDATE SET count = count + excluded.count,
		target = CASE WHEN target = excluded.target THEN target ELSE '*' END`)
	if err != nil {
		return err
	}
	return s.writeAsync(func(tx *sql.Tx) error {
		_, err := tx.Stmt(up).Exec(ms(e.At), e.AccountID, e.Actor, e.Action, e.Target, e.Outcome, e.Reason, e.Source, max(e.Count, 1), key)
		return err
	})
}

// ListAudit implements audit.Store. Entries are appended without waiting
// for their commit, so a listing first passes a no-op through the writer:
// the queue is first in, first out, so every entry recorded before the
// listing began is committed, and readable, when it runs.
func (s *Store) ListAudit(ctx context.Context, f audit.Filter) ([]audit.Entry, error) {
	if err := s.Flush(ctx); err != nil {
		return nil, fmt.Errorf("flushing the audit trail: %w", err)
	}
	q := `SELECT id, at, account_id, actor, action, target, outcome, reason, source, count FROM audit WHERE 1=1`
	var args []any
	for _, c := range []struct{ col, v string }{{"account_id", f.AccountID}, {"action", f.Action}, {"target", f.Target}, {"outcome", f.Outcome}} {
		if c.v != "" {
			q += ` AND ` + c.col + ` = ?`
			args = append(args, c.v)
		}
	}
	if f.Before > 0 {
		q += ` AND id < ?`
		args = append(args, f.Before)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []audit.Entry{}
	for rows.Next() {
		var e audit.Entry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.AccountID, &e.Actor, &e.Action, &e.Target, &e.Outcome, &e.Reason, &e.Source, &e.Count); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// ApplyPresence implements registry.PresenceStore.
func (s *Store) ApplyPresence(ctx context.Context, ps []registry.Presence) (err error) {
	on, err := s.wprep(ctx, `UPDATE devices SET status = CASE WHEN status = 'disabled' THEN status ELSE 'online' END,
		first_online = COALESCE(first_online, ?), last_online = ? WHERE product_key = ? AND device_name = ?`)
	if err != nil {
		return err
	}
	off, err := s.wprep(ctx, `UPDATE devices SET status = CASE WHEN status = 'online' THEN 'offline' ELSE status END,
		last_online = ? WHERE product_key = ? AND device_name = ?`)
	if err != nil {
		return err
	}
	// A short session folded into one record: it was online, now is not.
	brief, err := s.wprep(ctx, `UPDATE devices SET status = CASE WHEN status IN ('online', 'inactive') THEN 'offline' ELSE status END,
		first_online = COALESCE(first_online, ?), last_online = ? WHERE product_key = ? AND device_name = ?`)
	if err != nil {
		return err
	}
	// The cache applies the same changes, in the order they committed.
	s.presenceMu.Lock()
	defer s.presenceMu.Unlock()
	began := s.auth.begin()
	defer s.auth.end(func(c *authCache, _ bool) {
		for _, p := range ps {
			switch {
			case err != nil:
				c.forget(p.ProductKey, p.DeviceName)
			case p.Online:
				c.restatus(p.ProductKey, p.DeviceName, presenceOn)
			case !p.ConnectedAt.IsZero():
				c.restatus(p.ProductKey, p.DeviceName, presenceBrief)
			default:
				c.restatus(p.ProductKey, p.DeviceName, presenceOff)
			}
		}
	}, began)
	// Updates of existing rows by their key, whatever they hold: nothing
	// but the store failing can fail them.
	return s.writeBatch(ctx, func(tx *sql.Tx) error {
		txOn, txOff, txBrief := tx.StmtContext(ctx, on), tx.StmtContext(ctx, off), tx.StmtContext(ctx, brief)
		for _, p := range ps {
			at := ms(p.At)
			var err error
			switch {
			case p.Online:
				_, err = txOn.ExecContext(ctx, at, at, p.ProductKey, p.DeviceName)
			case !p.ConnectedAt.IsZero():
				_, err = txBrief.ExecContext(ctx, ms(p.ConnectedAt), at, p.ProductKey, p.DeviceName)
			default:
				_, err = txOff.ExecContext(ctx, at, p.ProductKey, p.DeviceName)
			}
			if err != nil {
				return fmt.Errorf("presence of %s/%s: %w", p.ProductKey, p.DeviceName, err)
			}
		}
		return nil
	})
}

// ResetPresence implements registry.PresenceStore.
func (s *Store) ResetPresence(ctx context.Context, at time.Time) (n int64, err error) {
	defer s.auth.end(func(c *authCache, _ bool) {
		c.each(func(_ authKey, r *authRow) bool {
			r.status = presenceOff(r.status)
			return err == nil
		})
	}, s.auth.begin())
	res, err := s.w.ExecContext(ctx, `UPDATE devices SET status = 'offline', last_online = ? WHERE status = 'online'`, ms(at))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func provJSON(p registry.Provisioning) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// IssueSecret implements registry.ProvisioningStore.
func (s *Store) IssueSecret(ctx context.Context, pk, dn string) (bool, error) {
	res, err := s.exec(ctx, `UPDATE devices SET secret_issued = 1 WHERE product_key = ? AND device_name = ? AND secret_issued = 0`, pk, dn)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SetDeviceSecret implements registry.ProvisioningStore.
func (s *Store) SetDeviceSecret(ctx context.Context, pk, dn string, sealed []byte) error {
	defer s.auth.end(forgetting(pk, dn), s.auth.begin())
	res, err := s.exec(ctx, `UPDATE devices SET secret = ?, secret_issued = 1 WHERE product_key = ? AND device_name = ?`, sealed, pk, dn)
	return affected(res, err)
}

// SetDeviceDistributed implements registry.DistributionStore.
func (s *Store) SetDeviceDistributed(ctx context.Context, pk, dn, to string) error {
	defer s.auth.end(forgetting(pk, dn), s.auth.begin())
	res, err := s.exec(ctx, `UPDATE devices SET distributed_to = ? WHERE product_key = ? AND device_name = ?`, to, pk, dn)
	return affected(res, err)
}

// SetDeviceToken implements registry.ProvisioningStore.
func (s *Store) SetDeviceToken(ctx context.Context, pk, dn, clientID string, hash []byte) error {
	res, err := s.exec(ctx, `UPDATE devices SET token_client_id = ?, token_hash = ? WHERE product_key = ? AND device_name = ?`, clientID, hash, pk, dn)
	return affected(res, err)
}

// DeviceToken implements registry.ProvisioningStore.
func (s *Store) DeviceToken(ctx context.Context, pk, dn string) (string, []byte, error) {
	var cid string
	var hash []byte
	err := s.r.QueryRowContext(ctx, `SELECT token_client_id, token_hash FROM devices WHERE product_key = ? AND device_name = ?`, pk, dn).Scan(&cid, &hash)
	return cid, hash, notFound(err)
}

// RegistrationKey implements registry.ProvisioningStore.
func (s *Store) RegistrationKey(ctx context.Context, pk string) ([]byte, error) {
	var k []byte
	err := s.r.QueryRowContext(ctx, `SELECT registration_key FROM products WHERE product_key = ?`, pk).Scan(&k)
	return k, notFound(err)
}

// SetRegistrationKey implements registry.ProvisioningStore; it never
// replaces a key that exists (the caller reads it back).
func (s *Store) SetRegistrationKey(ctx context.Context, pk string, sealed []byte) error {
	_, err := s.w.ExecContext(ctx, `UPDATE products SET registration_key = ? WHERE product_key = ? AND registration_key IS NULL`, sealed, pk)
	return err
}

// UseRegistrationRandom implements registry.ProvisioningStore: one
// statement, so of two concurrent uses of a random only one wins.
func (s *Store) UseRegistrationRandom(ctx context.Context, pk, dn, random string, at, since time.Time) (bool, error) {
	st, err := s.wprep(ctx, useRandomSQL)
	if err != nil {
		return false, err
	}
	var regRandom sql.NullString
	var regAt sql.NullInt64
	err = s.queryRow(ctx, `SELECT reg_random, reg_at FROM devices WHERE product_key = ? AND device_name = ?`, pk, dn).Scan(&regRandom, &regAt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	if regRandom.Valid && regRandom.String == random && regAt.Int64 >= ms(since) {
		return false, nil // the request that created the device
	}
	// Early: the registration that follows commits with it, or after it
	// (the registry flushes when it answers without writing).
	var n int64
	err = s.writeEarly(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, st).ExecContext(ctx, pk, dn, random, ms(at), ms(since))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n == 1, err
}

// keepRandomsSQL, completed with a WHERE clause on devices, moves the
// randoms of devices about to be deleted to registration_randoms.
const keepRandomsSQL = `INSERT INTO registration_randoms (product_key, device_name, random, used_at)
	SELECT product_key, device_name, reg_random, reg_at FROM devices `

// useRandomSQL records a random; it changes no row (a replay) when the
// random was used at or after the second time argument.
const useRandomSQL = `INSERT INTO registration_randoms (product_key, device_name, random, used_at) VALUES (?, ?, ?, ?)
	ON CONFLICT (product_key, device_name, random) DO UPDATE SET used_at = excluded.used_at WHERE used_at < ?`

// PruneRegistrationRandoms implements registry.ProvisioningStore.
func (s *Store) PruneRegistrationRandoms(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM registration_randoms WHERE used_at < ?`, ms(before))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// exec runs one statement through the group-committed writer.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := s.wprep(ctx, query)
	if err != nil {
		return nil, err
	}
	var res sql.Result
	err = s.writeOne(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		return err
	})
	return res, err
}

// --- X.509 ---

const caCols = `id, account_id, fingerprint, pem, subject, status, mode, template, created_at`

func scanCA(sc interface{ Scan(...any) error }) (registry.CA, error) {
	var ca registry.CA
	var tmpl string
	var created int64
	if err := sc.Scan(&ca.ID, &ca.AccountID, &ca.Fingerprint, &ca.PEM, &ca.Subject, &ca.Status, &ca.Mode, &tmpl, &created); err != nil {
		return ca, err
	}
	ca.CreatedAt = fromMS(created)
	return ca, json.Unmarshal([]byte(tmpl), &ca.Template)
}

// CreateCA implements registry.CAStore.
func (s *Store) CreateCA(ctx context.Context, ca registry.CA) error {
	tmpl, _ := json.Marshal(ca.Template)
	_, err := s.exec(ctx, `INSERT INTO cas(`+caCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ca.ID, ca.AccountID, ca.Fingerprint, ca.PEM, ca.Subject, ca.Status, ca.Mode, string(tmpl), ms(ca.CreatedAt))
	if isUnique(err) {
		return fmt.Errorf("CA certificate registered already: %w", registry.ErrConflict)
	}
	return err
}

// GetCA implements registry.CAStore.
func (s *Store) GetCA(ctx context.Context, id string) (registry.CA, error) {
	ca, err := scanCA(s.r.QueryRowContext(ctx, `SELECT `+caCols+` FROM cas WHERE id = ?`, id))
	return ca, notFound(err)
}

// ListCAs implements registry.CAStore.
func (s *Store) ListCAs(ctx context.Context, account string) ([]registry.CA, error) {
	return list(ctx, s.r, func(r *sql.Rows) (registry.CA, error) { return scanCA(r) }, `SELECT `+caCols+` FROM cas WHERE ? = '' OR account_id = ? ORDER BY created_at, id`, account, account)
}

// SetCAStatus implements registry.CAStore.
func (s *Store) SetCAStatus(ctx context.Context, id string, st registry.CertStatus) error {
	res, err := s.exec(ctx, `UPDATE cas SET status = ? WHERE id = ?`, st, id)
	return affected(res, err)
}

// RegistrationCode implements registry.CAStore.
func (s *Store) RegistrationCode(ctx context.Context, account string) (string, error) {
	var code string
	err := s.r.QueryRowContext(ctx, `SELECT code FROM registration_codes WHERE account_id = ?`, account).Scan(&code)
	return code, notFound(err)
}

// SetRegistrationCode implements registry.CAStore.
func (s *Store) SetRegistrationCode(ctx context.Context, account, code string) error {
	_, err := s.exec(ctx, `INSERT INTO registration_codes(account_id, code) VALUES (?, ?) ON CONFLICT(account_id) DO UPDATE SET code = excluded.code`, account, code)
	return err
}

const certCols = `fingerprint, account_id, ca_id, product_key, device_name, subject, status, created_at`

func scanCert(sc interface{ Scan(...any) error }) (registry.Certificate, error) {
	var c registry.Certificate
	var created int64
	err := sc.Scan(&c.Fingerprint, &c.AccountID, &c.CAID, &c.ProductKey, &c.DeviceName, &c.Subject, &c.Status, &created)
	c.CreatedAt = fromMS(created)
	return c, err
}

// PutCertificate implements registry.CAStore.
func (s *Store) PutCertificate(ctx context.Context, c registry.Certificate) error {
	_, err := s.exec(ctx, `INSERT INTO certificates(`+certCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(fingerprint) DO UPDATE SET status = excluded.status, product_key = excluded.product_key, device_name = excluded.device_name`,
		c.Fingerprint, c.AccountID, c.CAID, c.ProductKey, c.DeviceName, c.Subject, c.Status, ms(c.CreatedAt))
	return err
}

// GetCertificate implements registry.CAStore.
func (s *Store) GetCertificate(ctx context.Context, fp string) (registry.Certificate, error) {
	c, err := scanCert(s.r.QueryRowContext(ctx, `SELECT `+certCols+` FROM certificates WHERE fingerprint = ?`, fp))
	return c, notFound(err)
}

// ListCertificates implements registry.CAStore.
func (s *Store) ListCertificates(ctx context.Context, account string, st registry.CertStatus) ([]registry.Certificate, error) {
	return list(ctx, s.r, func(r *sql.Rows) (registry.Certificate, error) { return scanCert(r) }, `SELECT `+certCols+` FROM certificates WHERE account_id = ? AND (? = '' OR status = ?) ORDER BY created_at`, account, st, st)
}

// SetGateway implements registry.TopologyStore.
func (s *Store) SetGateway(ctx context.Context, gateway string, subs [][2]string) ([]string, error) {
	get, err := s.wprep(ctx, `SELECT gateway FROM devices WHERE product_key = ? AND device_name = ?`)
	if err != nil {
		return nil, err
	}
	set, err := s.wprep(ctx, `UPDATE devices SET gateway = ? WHERE product_key = ? AND device_name = ?`)
	if err != nil {
		return nil, err
	}
	prev := make([]string, len(subs))
	err = s.write(ctx, func(tx *sql.Tx) error {
		g, u := tx.StmtContext(ctx, get), tx.StmtContext(ctx, set)
		for i, k := range subs {
			if err := g.QueryRowContext(ctx, k[0], k[1]).Scan(&prev[i]); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("device %s/%s: %w", k[0], k[1], registry.ErrNotFound)
				}
				return err
			}
			if _, err := u.ExecContext(ctx, gateway, k[0], k[1]); err != nil {
				return err
			}
		}
		return nil
	})
	return prev, err
}

// Subdevices implements registry.TopologyStore.
func (s *Store) Subdevices(ctx context.Context, gateway string) ([]registry.Device, error) {
	return list(ctx, s.r, func(r *sql.Rows) (registry.Device, error) { return scanDevice(r) }, `SELECT `+deviceCols+` FROM devices WHERE gateway = ? ORDER BY product_key, device_name`, gateway)
}

// SetTSL implements registry.ThingStore.
func (s *Store) SetTSL(ctx context.Context, pk string, model []byte) error {
	res, err := s.exec(ctx, `UPDATE products SET tsl = ? WHERE product_key = ?`, string(model), pk)
	return affected(res, err)
}

// TSL implements registry.ThingStore.
func (s *Store) TSL(ctx context.Context, pk string) ([]byte, error) {
	var m string
	err := s.queryRow(ctx, `SELECT tsl FROM products WHERE product_key = ?`, pk).Scan(&m)
	return []byte(m), notFound(err)
}

// SaveProperties implements registry.ThingStore.
func (s *Store) SaveProperties(ctx context.Context, pk, dn string, vals []registry.PropertyValue) error {
	up, err := s.wprep(ctx, `INSERT INTO device_properties(product_key, device_name, identifier, value, time) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(product_key, device_name, identifier) DO UPDATE SET value = excluded.value, time = excluded.time`)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		st := tx.StmtContext(ctx, up)
		for _, v := range vals {
			if _, err := st.ExecContext(ctx, pk, dn, v.Identifier, string(v.Value), ms(v.Time)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Properties implements registry.ThingStore.
func (s *Store) Properties(ctx context.Context, pk, dn string) ([]registry.PropertyValue, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT identifier, value, time FROM device_properties WHERE product_key = ? AND device_name = ? ORDER BY identifier`, pk, dn)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []registry.PropertyValue{}
	for rows.Next() {
		var v registry.PropertyValue
		var val string
		var t int64
		if err := rows.Scan(&v.Identifier, &val, &t); err != nil {
			return nil, err
		}
		v.Value, v.Time = json.RawMessage(val), fromMS(t)
		out = append(out, v)
	}
	return out, rows.Err()
}

// list runs a read query and scans every row.
func list[T any](ctx context.Context, db *sql.DB, scan func(*sql.Rows) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// likeEscaper makes LIKE's wildcards (and its escape character) literal.
var likeEscaper = strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`)

// likePrefix is the LIKE pattern (with ESCAPE '\') matching strings that
// start with prefix.
func likePrefix(prefix string) string { return likeEscaper.Replace(prefix) + "%" }

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/persist"
)

// MQTTStore is the MQTT engine's durable store (persist.Store) in the same
// database: every write is one operation of the group-committing writer,
// so it returns once its group is committed (fsynced under
// synchronous=FULL), and concurrent callers share that commit. A session's
// subscriptions, messages and inbound ids reference it with ON DELETE
// CASCADE, so that a session's deletion takes them and a write naming a
// client without a session fails its foreign key (persist.ErrNoSession).
type MQTTStore struct{ s *Store }

var _ persist.Store = (*MQTTStore)(nil)

// MQTT returns the MQTT engine's store over s; closing s closes it.
func (s *Store) MQTT() *MQTTStore { return &MQTTStore{s: s} }

// Hot statements, prepared once on the writer connection.
const (
	qEnqueue    = `INSERT INTO mqtt_messages(client_id, seq, state, packet_id, expiry, publish) VALUES (?, ?, ?, ?, ?, ?)` // + more rows
	qSetState   = `UPDATE mqtt_messages SET state = ?, packet_id = ? WHERE client_id = ? AND seq = ?`
	qDeleteMsg  = `DELETE FROM mqtt_messages WHERE client_id = ? AND seq = ?`
	qAddInbound = `INSERT INTO mqtt_inbound(client_id, packet_id) VALUES (?, ?) ON CONFLICT DO NOTHING`
	qRemInbound = `DELETE FROM mqtt_inbound WHERE client_id = ? AND packet_id = ?`
	qSetRetain  = `INSERT INTO mqtt_retained(topic, publish, stored_at, expiry) VALUES (?, ?, ?, ?)
		ON CONFLICT(topic) DO UPDATE SET publish = excluded.publish, stored_at = excluded.stored_at, expiry = excluded.expiry`
	qClrRetain  = `DELETE FROM mqtt_retained WHERE topic = ?`
	qPutSession = `INSERT INTO mqtt_sessions(client_id, version, expiry_interval, will, created_at, disconnected_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(client_id) DO UPDATE SET version = excluded.version, expiry_interval = excluded.expiry_interval, will = excluded.will,
		created_at = excluded.created_at, disconnected_at = excluded.disconnected_at, expires_at = excluded.expires_at`
	qDelSession = `DELETE FROM mqtt_sessions WHERE client_id = ?`
)

// mqttErr names what a failed constraint means to the port.
func mqttErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), "FOREIGN KEY constraint failed"):
		return fmt.Errorf("%s: %w", what, persist.ErrNoSession)
	case isUnique(err):
		return fmt.Errorf("%s: %w", what, persist.ErrDuplicate)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// msOrNil is t in Unix milliseconds, NULL for the zero time.
func msOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func timeOrZero(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}

// PutSession implements persist.Sessions. An upsert, never a REPLACE: a
// REPLACE deletes the row first, and the cascade would take the session's
// queue with it.
func (m *MQTTStore) PutSession(ctx context.Context, rec persist.Session) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	put, err := m.s.wprep(ctx, qPutSession)
	if err != nil {
		return fmt.Errorf("preparing: %w", err)
	}
	err = m.s.writeOne(ctx, func(tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, put).ExecContext(ctx, rec.ClientID, rec.Version, int64(rec.ExpiryInterval), nilIfEmpty(rec.Will), ms(rec.Created), msOrNil(rec.DisconnectedAt), msOrNil(rec.ExpiresAt()))
		return err
	})
	return mqttErr("storing session", err)
}

func nilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// DeleteSession implements persist.Sessions.
func (m *MQTTStore) DeleteSession(ctx context.Context, clientID string) error {
	del, err := m.s.wprep(ctx, qDelSession)
	if err != nil {
		return fmt.Errorf("preparing: %w", err)
	}
	err = m.s.writeOne(ctx, func(tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, del).ExecContext(ctx, clientID)
		return err
	})
	return mqttErr("deleting session", err)
}

// Subscribe implements persist.Sessions.
func (m *MQTTStore) Subscribe(ctx context.Context, clientID string, subs []persist.Subscription) error {
	if err := persist.ValidateSubscriptions(clientID, subs); err != nil {
		return err
	}
	err := m.s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM mqtt_sessions WHERE client_id = ?`, clientID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("subscribing %d filters: %w", len(subs), persist.ErrNoSession)
		}
		if err != nil {
			return err
		}
		for _, sub := range subs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO mqtt_subscriptions(client_id, filter, qos, no_local, retain_as_published, retain_handling, subscription_id)
				VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT(client_id, filter) DO UPDATE SET qos = excluded.qos, no_local = excluded.no_local,
				retain_as_published = excluded.retain_as_published, retain_handling = excluded.retain_handling, subscription_id = excluded.subscription_id`,
				clientID, sub.Filter, sub.QoS, sub.NoLocal, sub.RetainAsPublished, sub.RetainHandling, int64(sub.SubscriptionID)); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, persist.ErrNoSession) {
		return err
	}
	return mqttErr("subscribing", err)
}

// Unsubscribe implements persist.Sessions.
func (m *MQTTStore) Unsubscribe(ctx context.Context, clientID string, filters []string) error {
	err := m.s.write(ctx, func(tx *sql.Tx) error {
		for _, f := range filters {
			if _, err := tx.ExecContext(ctx, `DELETE FROM mqtt_subscriptions WHERE client_id = ? AND filter = ?`, clientID, f); err != nil {
				return err
			}
		}
		return nil
	})
	return mqttErr("unsubscribing", err)
}

// ExpireSessions implements persist.Sessions: the records are read and the
// sessions deleted in one operation of the writer.
func (m *MQTTStore) ExpireSessions(ctx context.Context, now time.Time) ([]persist.Session, error) {
	var gone []persist.Session
	err := m.s.write(ctx, func(tx *sql.Tx) error {
		gone = gone[:0]
		rows, err := tx.QueryContext(ctx, `SELECT client_id, version, expiry_interval, will, created_at, disconnected_at FROM mqtt_sessions
			WHERE expires_at <= ? ORDER BY client_id`, now.UnixMilli())
		if err != nil {
			return err
		}
		for rows.Next() {
			rec, err := scanSession(rows)
			if err != nil {
				rows.Close()
				return err
			}
			gone = append(gone, rec)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM mqtt_sessions WHERE expires_at <= ?`, now.UnixMilli())
		return err
	})
	if err != nil {
		return nil, mqttErr("expiring sessions", err)
	}
	return gone, nil
}

// scanSession reads client_id, version, expiry_interval, will, created_at,
// disconnected_at.
func scanSession(rows *sql.Rows) (persist.Session, error) {
	var rec persist.Session
	var interval, created int64
	var disconnected sql.NullInt64
	if err := rows.Scan(&rec.ClientID, &rec.Version, &interval, &rec.Will, &created, &disconnected); err != nil {
		return rec, err
	}
	rec.ExpiryInterval, rec.Created, rec.DisconnectedAt = uint32(interval), fromMS(created), timeOrZero(disconnected)
	return rec, nil
}

// enqueueRows is how many messages one INSERT statement carries (6
// variables each, far under SQLite's limit of 32,766).
const enqueueRows = 32

// enqueueQuery is the INSERT of k messages.
func enqueueQuery(k int) string {
	return qEnqueue + strings.Repeat(", (?, ?, ?, ?, ?, ?)", k-1)
}

// Write implements persist.Queues: the whole batch is one operation of the
// writer (its own savepoint), so a failed statement undoes all of it.
// Messages go in INSERTs of up to enqueueRows rows; a batch that is one such
// INSERT (one PUBLISH to up to 32 subscribers, nothing else) needs no
// savepoint, since SQLite undoes a failed statement whole.
func (m *MQTTStore) Write(ctx context.Context, b persist.Batch) error {
	if err := b.Validate(); err != nil {
		return err
	}
	if b.Empty() {
		return ctx.Err()
	}
	var ins [2]*sql.Stmt // a full INSERT of enqueueRows, and the last, shorter one
	full, rest := len(b.Enqueue)/enqueueRows, len(b.Enqueue)%enqueueRows
	var err error
	if full > 0 {
		if ins[0], err = m.s.wprep(ctx, enqueueQuery(enqueueRows)); err != nil {
			return fmt.Errorf("preparing: %w", err)
		}
	}
	if rest > 0 {
		if ins[1], err = m.s.wprep(ctx, enqueueQuery(rest)); err != nil {
			return fmt.Errorf("preparing: %w", err)
		}
	}
	var st [6]*sql.Stmt
	others := len(b.Transitions) + len(b.AddInbound) + len(b.RemoveInbound) + len(b.SetRetained) + len(b.ClearRetained)
	if others > 0 {
		for i, q := range [...]string{qSetState, qDeleteMsg, qAddInbound, qRemInbound, qSetRetain, qClrRetain} {
			if st[i], err = m.s.wprep(ctx, q); err != nil {
				return fmt.Errorf("preparing: %w", err)
			}
		}
	}
	var failed string // what the failing statement was doing
	fn := func(tx *sql.Tx) error {
		args := make([]any, 0, 6*min(len(b.Enqueue), enqueueRows))
		for i := 0; i < len(b.Enqueue); i += enqueueRows {
			chunk := b.Enqueue[i:min(i+enqueueRows, len(b.Enqueue))]
			args = args[:0]
			for _, msg := range chunk {
				args = append(args, msg.ClientID, int64(msg.Seq), msg.State, msg.PacketID, msOrNil(msg.Expiry), msg.Publish)
			}
			stmt := ins[0]
			if len(chunk) < enqueueRows {
				stmt = ins[1]
			}
			if _, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...); err != nil {
				failed = fmt.Sprintf("enqueueing %d messages", len(chunk))
				return err
			}
		}
		for _, t := range b.Transitions {
			var err error
			if t.State == persist.Done {
				_, err = tx.StmtContext(ctx, st[1]).ExecContext(ctx, t.ClientID, int64(t.Seq))
			} else {
				_, err = tx.StmtContext(ctx, st[0]).ExecContext(ctx, t.State, t.PacketID, t.ClientID, int64(t.Seq))
			}
			if err != nil {
				failed = fmt.Sprintf("moving message %d to %s", t.Seq, t.State)
				return err
			}
		}
		for _, in := range b.AddInbound {
			if _, err := tx.StmtContext(ctx, st[2]).ExecContext(ctx, in.ClientID, in.PacketID); err != nil {
				failed = fmt.Sprintf("recording inbound packet id %d", in.PacketID)
				return err
			}
		}
		for _, in := range b.RemoveInbound {
			if _, err := tx.StmtContext(ctx, st[3]).ExecContext(ctx, in.ClientID, in.PacketID); err != nil {
				failed = fmt.Sprintf("releasing inbound packet id %d", in.PacketID)
				return err
			}
		}
		for _, r := range b.SetRetained {
			if _, err := tx.StmtContext(ctx, st[4]).ExecContext(ctx, r.Topic, r.Publish, ms(r.Stored), msOrNil(r.Expiry)); err != nil {
				failed = "storing a retained message"
				return err
			}
		}
		for _, topic := range b.ClearRetained {
			if _, err := tx.StmtContext(ctx, st[5]).ExecContext(ctx, topic); err != nil {
				failed = "clearing a retained message"
				return err
			}
		}
		return nil
	}
	if len(b.Enqueue) <= enqueueRows && others == 0 {
		err = m.s.writeOne(ctx, fn)
	} else {
		err = m.s.write(ctx, fn)
	}
	if failed == "" {
		failed = "writing a batch"
	}
	return mqttErr(failed, err)
}

// SetRetained implements persist.RetainedStore.
func (m *MQTTStore) SetRetained(ctx context.Context, r persist.Retained) error {
	if err := r.Validate(); err != nil {
		return err
	}
	err := m.s.writeOne(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, qSetRetain, r.Topic, r.Publish, ms(r.Stored), msOrNil(r.Expiry))
		return err
	})
	return mqttErr("storing a retained message", err)
}

// ClearRetained implements persist.RetainedStore.
func (m *MQTTStore) ClearRetained(ctx context.Context, topic string) error {
	err := m.s.writeOne(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, qClrRetain, topic)
		return err
	})
	return mqttErr("clearing a retained message", err)
}

// ExpireRetained implements persist.RetainedStore.
func (m *MQTTStore) ExpireRetained(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := m.s.writeOne(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM mqtt_retained WHERE expiry <= ?`, now.UnixMilli())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, mqttErr("expiring retained messages", err)
	}
	return int(n), nil
}

// LoadRetained implements persist.RetainedStore.
func (m *MQTTStore) LoadRetained(ctx context.Context, fn func(persist.Retained) error) error {
	rows, err := m.s.r.QueryContext(ctx, `SELECT topic, publish, stored_at, expiry FROM mqtt_retained ORDER BY topic`)
	if err != nil {
		return fmt.Errorf("loading retained messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r persist.Retained
		var stored int64
		var expiry sql.NullInt64
		if err := rows.Scan(&r.Topic, &r.Publish, &stored, &expiry); err != nil {
			return fmt.Errorf("loading retained messages: %w", err)
		}
		r.Stored, r.Expiry = fromMS(stored), timeOrZero(expiry)
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("loading retained messages: %w", err)
	}
	return nil
}

package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/corral-iot/corral/internal/mqtt/persist"
)

// Load implements persist.Sessions: four cursors, each ordered by client
// id, walked side by side in one read transaction (one snapshot, four
// queries whatever the number of sessions).
func (m *MQTTStore) Load(ctx context.Context, fn func(persist.Loaded) error) error {
	if err := m.load(ctx, fn); err != nil {
		return fmt.Errorf("loading sessions: %w", err)
	}
	return nil
}

func (m *MQTTStore) load(ctx context.Context, fn func(persist.Loaded) error) error {
	tx, err := m.s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	sessions, err := tx.QueryContext(ctx, `SELECT client_id, version, expiry_interval, will, created_at, disconnected_at FROM mqtt_sessions ORDER BY client_id`)
	if err != nil {
		return err
	}
	defer sessions.Close()
	subs, err := openCursor(ctx, tx, `SELECT client_id, filter, qos, no_local, retain_as_published, retain_handling, subscription_id FROM mqtt_subscriptions ORDER BY client_id, filter`,
		func(r *sql.Rows) (string, persist.Subscription, error) {
			var s persist.Subscription
			var id int64
			err := r.Scan(&s.ClientID, &s.Filter, &s.QoS, &s.NoLocal, &s.RetainAsPublished, &s.RetainHandling, &id)
			s.SubscriptionID = uint32(id)
			return s.ClientID, s, err
		})
	if err != nil {
		return err
	}
	defer subs.close()
	msgs, err := openCursor(ctx, tx, `SELECT client_id, seq, state, packet_id, expiry, publish FROM mqtt_messages ORDER BY client_id, seq`,
		func(r *sql.Rows) (string, persist.Message, error) {
			var msg persist.Message
			var seq int64
			var expiry sql.NullInt64
			err := r.Scan(&msg.ClientID, &seq, &msg.State, &msg.PacketID, &expiry, &msg.Publish)
			msg.Seq, msg.Expiry = uint64(seq), timeOrZero(expiry)
			return msg.ClientID, msg, err
		})
	if err != nil {
		return err
	}
	defer msgs.close()
	inbound, err := openCursor(ctx, tx, `SELECT client_id, packet_id FROM mqtt_inbound ORDER BY client_id, packet_id`,
		func(r *sql.Rows) (string, uint16, error) {
			var id string
			var pid uint16
			err := r.Scan(&id, &pid)
			return id, pid, err
		})
	if err != nil {
		return err
	}
	defer inbound.close()

	for sessions.Next() {
		var l persist.Loaded
		if l.Session, err = scanSession(sessions); err != nil {
			return err
		}
		id := l.Session.ClientID
		if l.Subscriptions, err = subs.take(id); err != nil {
			return err
		}
		if l.Messages, err = msgs.take(id); err != nil {
			return err
		}
		if l.Inbound, err = inbound.take(id); err != nil {
			return err
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return sessions.Err()
}

// cursor walks rows ordered by client id, one row read ahead.
type cursor[T any] struct {
	rows *sql.Rows
	scan func(*sql.Rows) (string, T, error)
	ok   bool // a row is read ahead
	id   string
	v    T
}

func openCursor[T any](ctx context.Context, tx *sql.Tx, q string, scan func(*sql.Rows) (string, T, error)) (*cursor[T], error) {
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c := &cursor[T]{rows: rows, scan: scan}
	return c, c.next()
}

func (c *cursor[T]) next() error {
	if c.ok = c.rows.Next(); !c.ok {
		return c.rows.Err()
	}
	var err error
	c.id, c.v, err = c.scan(c.rows)
	return err
}

// take returns the rows of client id, skipping those of smaller ids (none
// exist while the foreign keys hold).
func (c *cursor[T]) take(id string) ([]T, error) {
	var out []T
	for c.ok && c.id <= id {
		if c.id == id {
			out = append(out, c.v)
		}
		if err := c.next(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *cursor[T]) close() { c.rows.Close() }

package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
)

// The writer's connection runs every statement without its caller's
// cancellation (quietConnector). A write op runs inside the group's shared
// transaction: were a caller's context to end while its statement runs,
// the driver would interrupt the connection, and SQLite rolls back the
// whole transaction on an interrupted write, failing every other caller of
// the group (one client hanging up could fail other tenants' writes). The
// writer checks an op's context before running it; once started, an op
// runs to its end. It also spares the driver the goroutine it starts a
// statement to watch a cancellable context.

// quietConnector opens the driver's connections wrapped in quietConn.
type quietConnector struct {
	dsn string
	drv driver.Driver
}

func (c quietConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if dc, ok := c.drv.(driver.DriverContext); ok {
		cn, err := dc.OpenConnector(c.dsn)
		if err != nil {
			return nil, err
		}
		conn, err := cn.Connect(context.WithoutCancel(ctx))
		if err != nil {
			return nil, err
		}
		return quietConn{conn}, nil
	}
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return quietConn{conn}, nil
}

func (c quietConnector) Driver() driver.Driver { return c.drv }

// quietConn passes every call on with a context that cannot be cancelled;
// an interface the driver's connection lacks is answered as database/sql
// expects of a driver without it.
type quietConn struct{ driver.Conn }

func (c quietConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var st driver.Stmt
	var err error
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(context.WithoutCancel(ctx), query)
	} else {
		st, err = c.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return quietStmt{st}, nil
}

func (c quietConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c quietConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(context.WithoutCancel(ctx), opts)
	}
	return c.Conn.Begin() //nolint:staticcheck // the driver has nothing newer
}

func (c quietConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := c.Conn.(driver.ExecerContext); ok {
		return e.ExecContext(context.WithoutCancel(ctx), query, args)
	}
	return nil, driver.ErrSkip
}

func (c quietConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := c.Conn.(driver.QueryerContext); ok {
		return q.QueryContext(context.WithoutCancel(ctx), query, args)
	}
	return nil, driver.ErrSkip
}

func (c quietConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (c quietConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c quietConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c quietConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// quietStmt is a prepared statement of a quietConn.
type quietStmt struct{ driver.Stmt }

func (s quietStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		return e.ExecContext(context.WithoutCancel(ctx), args)
	}
	vals, err := values(args)
	if err != nil {
		return nil, err
	}
	return s.Stmt.Exec(vals) //nolint:staticcheck // the driver has nothing newer
}

func (s quietStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return q.QueryContext(context.WithoutCancel(ctx), args)
	}
	vals, err := values(args)
	if err != nil {
		return nil, err
	}
	return s.Stmt.Query(vals) //nolint:staticcheck // the driver has nothing newer
}

func (s quietStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

var errNamedArgs = errors.New("named arguments on a driver without them")

// values are positional arguments for a driver's Exec or Query.
func values(args []driver.NamedValue) ([]driver.Value, error) {
	out := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, errNamedArgs
		}
		out[i] = a.Value
	}
	return out, nil
}

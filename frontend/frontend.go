// Package frontend serves one Nix worker-protocol client connection, passing its store operations to a Backend.
package frontend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"privnix/frontend/wire"
)

// DefaultProtocolVersion is what privnix advertises: Nix 2.8's protocol, 1.34.
var DefaultProtocolVersion = wire.V(34)

// MinClientVersion is the oldest client accepted (as Nix 2.33+ does).
var MinClientVersion = wire.V(18)

// DefaultNixVersion is the version string announced when Session.NixVersion is empty.
const DefaultNixVersion = "2.8.0"

// Session is what the monitor decided about this connection.
type Session struct {
	Trusted    bool
	User       string
	Refusal    string // non-empty: finish the handshake, send this as an error, close
	StoreDir   string // e.g. "/nix/store"
	NixVersion string // announced to ≥1.33 clients ("2.8.0"-style)
	// ProtocolVersion is the version advertised; 0 means DefaultProtocolVersion.
	ProtocolVersion wire.Version
	// Features are offered in the ≥1.38 feature exchange; privnix implements none yet.
	Features []string
	// Log receives internal errors (whose details the client does not see); nil = slog.Default().
	Log *slog.Logger
}

// ErrRefused is returned (unwrapped) by Serve after it told a refused client why.
var ErrRefused = errors.New("connection refused by the monitor")

// errClose marks errors after which the stream position is unknown: the connection ends.
type errClose struct{ err error }

func (e errClose) Error() string { return e.err.Error() }
func (e errClose) Unwrap() error { return e.err }

// conn is one client connection. The mutex serialises writes to the client between the
// operation's goroutine, a payload reader (STDERR_READ) and the Backend's logger.
type conn struct {
	ctx      context.Context
	sess     Session
	b        Backend
	r        *wire.Reader
	mu       sync.Mutex
	w        *wire.Writer
	v        wire.Version // negotiated: min(client, advertised)
	features []string
	op       *opInfo
	inWork   bool
	log      *Logger
}

// Serve runs the handshake and the operation loop until the client closes the connection
// (nil), breaks the protocol, or ctx ends.
func Serve(ctx context.Context, client io.ReadWriter, sess Session, b Backend) error {
	if c, ok := client.(io.Closer); ok {
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		defer stop()
	}
	c := &conn{ctx: ctx, sess: sess, b: b, r: wire.NewReader(client), w: wire.NewWriter(client)}
	if c.sess.ProtocolVersion == 0 {
		c.sess.ProtocolVersion = DefaultProtocolVersion
	}
	if c.sess.Log == nil {
		c.sess.Log = slog.Default()
	}
	if c.sess.NixVersion == "" {
		c.sess.NixVersion = DefaultNixVersion
	}
	c.log = &Logger{c: c}
	c.log.verbosity.Store(wire.LvlInfo)
	if err := c.handshake(); err != nil {
		return err
	}
	for {
		if err := c.serveOne(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// handshake follows §2.2: the magic is answered at once, only then is the version read.
func (c *conn) handshake() error {
	magic, err := c.r.U64()
	if err != nil {
		return fmt.Errorf("reading the client hello: %w", err)
	}
	if magic != wire.Magic1 {
		return fmt.Errorf("protocol mismatch: client hello 0x%x is not 0x%x", magic, wire.Magic1)
	}
	c.w.U64(wire.Magic2)
	c.w.U64(uint64(c.sess.ProtocolVersion))
	if err := c.w.Flush(); err != nil {
		return err
	}
	cv, err := c.r.Uint(1<<32-1, "client version")
	if err != nil {
		return fmt.Errorf("reading the client version: %w", err)
	}
	if wire.Version(cv) < MinClientVersion {
		return fmt.Errorf("the Nix client version is too old (%s; privnix needs %s or newer)", wire.Version(cv), MinClientVersion)
	}
	c.v = min(wire.Version(cv), c.sess.ProtocolVersion)
	if err := c.exchangeFeatures(); err != nil {
		return err
	}
	if err := c.readObsoleteHello(); err != nil {
		return err
	}
	trust := wire.NotTrusted
	if c.sess.Trusted {
		trust = wire.Trusted
	}
	wire.WriteHandshakeInfo(c.w, c.v, c.sess.NixVersion, trust)
	if c.sess.Refusal != "" {
		c.w.StderrError(c.v, wire.ErrorInfo{Message: c.sess.Refusal, Status: 1})
		_ = c.w.Flush()
		return ErrRefused
	}
	c.w.StderrLast()
	return c.w.Flush()
}

func (c *conn) exchangeFeatures() error {
	if !c.v.AtLeast(38) {
		return nil
	}
	theirs, err := c.r.StringSet(wire.MaxFeatures, 256, "client features")
	if err != nil {
		return fmt.Errorf("reading the client's features: %w", err)
	}
	c.w.StringSet(c.sess.Features)
	if err := c.w.Flush(); err != nil {
		return err
	}
	for _, f := range theirs {
		if slices.Contains(c.sess.Features, f) {
			c.features = append(c.features, f)
		}
	}
	return nil
}

// readObsoleteHello reads the CPU affinity (≥1.14) and reserveSpace (≥1.11) fields.
func (c *conn) readObsoleteHello() error {
	if c.v.AtLeast(14) {
		aff, err := c.r.U64()
		if err == nil && aff != 0 {
			_, err = c.r.U64()
		}
		if err != nil {
			return fmt.Errorf("reading the CPU affinity: %w", err)
		}
	}
	if c.v.AtLeast(11) {
		if _, err := c.r.U64(); err != nil {
			return fmt.Errorf("reading reserveSpace: %w", err)
		}
	}
	return nil
}

// serveOne reads and answers one operation.
func (c *conn) serveOne() error {
	n, err := c.r.U64()
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return io.EOF
		}
		return err
	}
	c.setInWork(false)
	c.r.SetBudget(argBudget)
	defer c.r.SetBudget(-1)
	op, ok := ops[n]
	if !ok {
		return c.fail(errClose{Errorf("invalid operation %d", n)})
	}
	c.op = &op
	if err := op.handle(c); err != nil {
		return c.fail(err)
	}
	return nil
}

// argBudget caps the bytes one operation's arguments may allocate (payloads are streamed).
const argBudget = 128 << 20

// fail sends err to the client. Errors before work (argument parsing, early refusals) and
// protocol errors end the connection, as in Nix; errors during work do not.
func (c *conn) fail(err error) error {
	var ab errAbort
	if errors.As(err, &ab) {
		return fmt.Errorf("aborting the connection in operation '%s': %w", c.opName(), err)
	}
	var ce errClose
	closing := errors.As(err, &ce) || !c.inWork || errors.Is(err, wire.ErrProtocol)
	msg, status := c.errorText(err)
	c.mu.Lock()
	c.w.StderrError(c.v, wire.ErrorInfo{Message: msg, Status: status})
	ferr := c.w.Flush()
	c.inWork = false
	c.mu.Unlock()
	if ferr != nil {
		return ferr
	}
	if closing {
		return fmt.Errorf("closing the connection after %s", msg)
	}
	return nil
}

// errorText turns an error into what the client prints.
func (c *conn) errorText(err error) (string, uint64) {
	var fe *Error
	switch {
	case errors.As(err, &fe):
		return fe.Msg, uint64(max(fe.Status, 1))
	case errors.Is(err, ErrNotImplemented):
		return fmt.Sprintf("operation '%s' is not yet implemented by privnix", c.opName()), 1
	case errors.Is(err, wire.ErrProtocol), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("%s: %v", c.opName(), err), 1
	}
	c.sess.Log.Error("internal error", "op", c.opName(), "user", c.sess.User, "err", err)
	return fmt.Sprintf("privnix: internal error in operation '%s' (details are in the daemon's log)", c.opName()), 1
}

func (c *conn) opName() string {
	if c.op == nil {
		return "unknown"
	}
	return c.op.name
}

// begin ends argument parsing: it applies the op's trust rule, then starts work.
func (c *conn) begin() error {
	if c.op.flags&needsTrust != 0 && !c.sess.Trusted {
		err := error(&Error{Msg: c.op.refusal, Status: 1})
		if c.op.flags&refuseEarly != 0 {
			return errClose{err}
		}
		c.setInWork(true)
		return err
	}
	c.setInWork(true)
	return nil
}

func (c *conn) setInWork(b bool) {
	defer c.lockWriter()()
	c.inWork = b
}

// reply ends a successful operation: STDERR_LAST, then the result written by fn.
func (c *conn) reply(fn func(w *wire.Writer)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w.StderrLast()
	if fn != nil {
		fn(c.w)
	}
	c.inWork = false
	return c.w.Flush()
}

// lockWriter locks the client writer and returns the unlock function.
func (c *conn) lockWriter() func() {
	c.mu.Lock()
	return c.mu.Unlock
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

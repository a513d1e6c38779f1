// Package nixclient is a small Nix worker-protocol client for privnix's
// tests and benchmarks: a handshake, SetOptions and a few queries, as the Nix
// 2.8 client sends them.
package nixclient

import (
	"errors"
	"fmt"
	"net"
	"time"

	"privnix/frontend/wire"
)

// Op numbers of the worker protocol used here.
const (
	OpIsValidPath   = 1
	OpSetOptions    = 19
	OpQueryPathInfo = 26
)

// Client is one connection.
type Client struct {
	conn       net.Conn
	r          *wire.Reader
	w          *wire.Writer
	V          wire.Version // negotiated
	NixVersion string       // what the daemon announced (≥ 1.33)
	// Record, when set, is given every stderr message the daemon sends.
	Record func(wire.StderrMsg)
}

// RemoteError is an error the daemon sent (STDERR_ERROR).
type RemoteError struct{ Message string }

func (e *RemoteError) Error() string { return "daemon: " + e.Message }

// Dial connects and performs the handshake as a client of version v.
func Dial(socket string, v wire.Version) (*Client, error) {
	conn, err := net.DialTimeout("unix", socket, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, r: wire.NewReader(conn), w: wire.NewWriter(conn)}
	if err := c.handshake(v); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) handshake(v wire.Version) error {
	c.w.U64(wire.Magic1)
	if err := c.w.Flush(); err != nil {
		return err
	}
	magic, err := c.r.U64()
	if err != nil {
		return fmt.Errorf("reading the daemon's magic: %w", err)
	}
	if magic != wire.Magic2 {
		return fmt.Errorf("daemon magic %#x", magic)
	}
	dv, err := c.r.U64()
	if err != nil {
		return err
	}
	c.V = min(v, wire.Version(dv))
	c.w.U64(uint64(v))
	if c.V.AtLeast(38) {
		c.w.Strings(nil)
		if err := c.w.Flush(); err != nil {
			return err
		}
		if _, err := c.r.Strings(64, 256, "daemon features"); err != nil {
			return err
		}
	}
	c.w.U64(0) // cpu affinity
	c.w.U64(0) // reserve space
	if err := c.w.Flush(); err != nil {
		return err
	}
	if c.V.AtLeast(33) {
		if c.NixVersion, err = c.r.String(256, "nix version"); err != nil {
			return err
		}
	}
	if c.V.AtLeast(35) {
		if _, err := c.r.U64(); err != nil {
			return err
		}
	}
	return c.stderr()
}

// stderr reads stderr messages until LAST (nil) or ERROR (a *RemoteError).
func (c *Client) stderr() error {
	for {
		m, err := c.r.StderrMessage(c.V)
		if err != nil {
			return err
		}
		if c.Record != nil {
			c.Record(m)
		}
		switch m.Kind {
		case wire.StderrLast:
			return nil
		case wire.StderrError:
			return &RemoteError{Message: m.Err.Message}
		case wire.StderrRead:
			return errors.New("the daemon asked for data this client does not send")
		}
	}
}

// SetOptions sends the options the 2.8 client sends by default.
func (c *Client) SetOptions() error { return c.SetOptionsWith(nil) }

// SetOptionsWith sends the 2.8 client's default options with overrides
// (setting name → value, as `--option` sends them).
func (c *Client) SetOptionsWith(overrides []wire.Pair) error {
	c.w.U64(OpSetOptions)
	wire.WriteClientOptions(c.w, c.V, wire.ClientOptions{Verbosity: 3, MaxBuildJobs: 1, VerboseBuild: 3, UseSubstitutes: true, Overrides: overrides})
	if err := c.w.Flush(); err != nil {
		return err
	}
	return c.stderr()
}

// IsValidPath asks whether path is valid.
func (c *Client) IsValidPath(path string) (bool, error) {
	c.w.U64(OpIsValidPath)
	c.w.String(path)
	if err := c.w.Flush(); err != nil {
		return false, err
	}
	if err := c.stderr(); err != nil {
		return false, err
	}
	return c.r.Bool()
}

// QueryPathInfo returns the path's info, or nil if it is not valid.
func (c *Client) QueryPathInfo(path string) (*wire.UnkeyedValidPathInfo, error) {
	c.w.U64(OpQueryPathInfo)
	c.w.String(path)
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	if err := c.stderr(); err != nil {
		return nil, err
	}
	valid, err := c.r.Bool()
	if err != nil || !valid {
		return nil, err
	}
	info, err := wire.ReadUnkeyedValidPathInfo(c.r, c.V)
	return &info, err
}

// SetDeadline sets the read and write deadline of the connection (zero: none),
// so that a load generator cannot hang on a daemon that stopped answering.
func (c *Client) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

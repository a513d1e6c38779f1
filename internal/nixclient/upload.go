package nixclient

import (
	"errors"
	"fmt"
	"io"
	"net"

	"privnix/frontend/wire"
)

// Op numbers of the uploads.
const (
	OpAddToStore     = 7
	OpAddTextToStore = 8
	OpAddToStoreNar  = 39
)

// ErrStopped is what Upload.Write returns once the daemon has ended the
// operation's stderr phase before the payload's end (as the 2.8 client, the
// sender then stops and Finish sends the terminator).
var ErrStopped = errors.New("the daemon ended the operation during the upload")

// Upload is one framed upload (AddToStore ≥ 1.25, AddToStoreNar ≥ 1.23) whose
// arguments are sent: the payload follows through Write or Send, each Write
// one frame, flushed at once. The payload is whatever the caller writes —
// bogus bytes, a NAR longer or shorter than claimed — and the caller chooses
// how it ends: Finish (the terminator, then the daemon's answer) or
// Disconnect (the socket closes mid-upload). As the 2.8 client does, it
// reads the stderr channel while the payload is being sent.
type Upload struct {
	c      *Client
	op     uint64
	fw     *wire.FramedWriter
	phase  chan error // the stderr phase's outcome: nil (LAST) or the error
	ended  bool       // phase has been received into result
	result error
	sent   int64
	closed bool
}

// StartAddToStore sends AddToStore's ≥ 1.25 arguments (§4.3 op 7): name,
// content-address method ("fixed:r:sha256", "fixed:sha1", "text:sha256"…),
// references and repair. The payload is a NAR for "fixed:r:…", else the
// file's bytes.
func (c *Client) StartAddToStore(name, camStr string, refs []string, repair bool) (*Upload, error) {
	if !c.V.AtLeast(25) {
		return nil, fmt.Errorf("framed AddToStore needs protocol 1.25, negotiated %v", c.V)
	}
	c.w.U64(OpAddToStore)
	c.w.String(name)
	c.w.String(camStr)
	c.w.StringSet(refs)
	c.w.Bool(repair)
	return c.startUpload(OpAddToStore)
}

// StartAddToStoreNar sends AddToStoreNar's arguments (§4.3 op 39): the keyed
// path info as given (its narHash and narSize need not be true), repair and
// dontCheckSigs. The payload is the NAR.
func (c *Client) StartAddToStoreNar(info wire.ValidPathInfo, repair, dontCheckSigs bool) (*Upload, error) {
	if !c.V.AtLeast(23) {
		return nil, fmt.Errorf("framed AddToStoreNar needs protocol 1.23, negotiated %v", c.V)
	}
	c.w.U64(OpAddToStoreNar)
	wire.WriteValidPathInfo(c.w, c.V, info)
	c.w.Bool(repair)
	c.w.Bool(dontCheckSigs)
	return c.startUpload(OpAddToStoreNar)
}

func (c *Client) startUpload(op uint64) (*Upload, error) {
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	u := &Upload{c: c, op: op, fw: wire.NewFramedWriter(c.w), phase: make(chan error, 1)}
	go func() { u.phase <- c.stderr() }()
	return u, nil
}

// Refused returns the daemon's error if it has already ended the stderr
// phase with one (nil otherwise, and while it has not ended it).
func (u *Upload) Refused() error {
	u.poll()
	if u.ended {
		return u.result
	}
	return nil
}

func (u *Upload) poll() {
	if u.ended {
		return
	}
	select {
	case u.result = <-u.phase:
		u.ended = true
	default:
	}
}

// Sent is the number of payload bytes sent so far.
func (u *Upload) Sent() int64 { return u.sent }

// Write sends p as one frame and flushes it. After the daemon ended the
// stderr phase it sends nothing and returns ErrStopped.
func (u *Upload) Write(p []byte) (int, error) {
	if u.closed {
		return 0, errors.New("nixclient: write after the upload ended")
	}
	if u.poll(); u.ended {
		return 0, ErrStopped
	}
	if _, err := u.fw.Write(p); err != nil {
		return 0, err
	}
	if err := u.c.w.Flush(); err != nil {
		return 0, err
	}
	u.sent += int64(len(p))
	return len(p), nil
}

// Send copies r to the daemon in frames of up to 64 KiB, until r's end or
// until the daemon ends the stderr phase (then it returns nil: Finish says
// why).
func (u *Upload) Send(r io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := u.Write(buf[:n]); err != nil {
				if errors.Is(err, ErrStopped) {
					return nil
				}
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// Finish sends the terminator, waits for the end of the stderr phase and
// reads the reply: AddToStore's path info, nothing (nil) for AddToStoreNar.
// A refusal is a *RemoteError.
func (u *Upload) Finish() (*wire.ValidPathInfo, error) {
	if u.closed {
		return nil, errors.New("nixclient: the upload already ended")
	}
	u.closed = true
	if err := u.fw.Close(); err != nil {
		if u.poll(); u.ended && u.result != nil {
			return nil, u.result
		}
		return nil, err
	}
	if !u.ended {
		u.result, u.ended = <-u.phase, true
	}
	if u.result != nil {
		return nil, u.result
	}
	if u.op != OpAddToStore {
		return nil, nil
	}
	info, err := wire.ReadValidPathInfo(u.c.r, u.c.V)
	if err != nil {
		return nil, err
	}
	return &info, nil
}

// Disconnect closes the connection in the middle of the upload, without a
// terminator, as a client that crashed or was killed.
func (u *Upload) Disconnect() error {
	u.closed = true
	err := u.c.conn.Close()
	if !u.ended {
		u.result, u.ended = <-u.phase, true // the reader fails on the closed connection
	}
	return err
}

// AddToStore is StartAddToStore, Send(payload) and Finish.
func (c *Client) AddToStore(name, camStr string, refs []string, repair bool, payload io.Reader) (*wire.ValidPathInfo, error) {
	u, err := c.StartAddToStore(name, camStr, refs, repair)
	if err != nil {
		return nil, err
	}
	if err := u.Send(payload); err != nil {
		return nil, err
	}
	return u.Finish()
}

// AddToStoreNar is StartAddToStoreNar, Send(nar) and Finish.
func (c *Client) AddToStoreNar(info wire.ValidPathInfo, repair, dontCheckSigs bool, nar io.Reader) error {
	u, err := c.StartAddToStoreNar(info, repair, dontCheckSigs)
	if err != nil {
		return err
	}
	if err := u.Send(nar); err != nil {
		return err
	}
	_, err = u.Finish()
	return err
}

// AddTextToStore sends the obsolete op 8 (name, text, references) and
// returns the path.
func (c *Client) AddTextToStore(name, text string, refs []string) (string, error) {
	c.w.U64(OpAddTextToStore)
	c.w.String(name)
	c.w.String(text)
	c.w.StringSet(refs)
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	if err := c.stderr(); err != nil {
		return "", err
	}
	return c.r.String(wire.MaxPathLen, "path")
}

// NewClient performs the handshake as a client of version v on a connection
// the caller made, so that the caller can set deadlines on it, or close it
// from another goroutine, before and during the handshake.
func NewClient(conn net.Conn, v wire.Version) (*Client, error) {
	c := &Client{conn: conn, r: wire.NewReader(conn), w: wire.NewWriter(conn)}
	if err := c.handshake(v); err != nil {
		return nil, err
	}
	return c, nil
}

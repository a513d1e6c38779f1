package frontend

import (
	"errors"
	"io"

	"privnix/frontend/wire"
)

// errAbort ends the connection without sending anything more (the client is mid-stream).
type errAbort struct{ err error }

func (e errAbort) Error() string { return e.err.Error() }
func (e errAbort) Unwrap() error { return e.err }

var errConsumerDone = errors.New("the store stopped reading the upload")

// upload passes a payload from the client to consume. produce reads the payload off the
// connection and always runs to its end, even when consume stops early, so that the next
// operation starts at the right byte (§1.4). A produce error is a protocol error.
func (c *conn) upload(produce func(dst io.Writer) error, consume func(src io.Reader) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := produce(&drainWriter{w: pw})
		_ = pw.CloseWithError(err)
		done <- err
	}()
	cerr := consume(pr)
	_ = pr.CloseWithError(errConsumerDone)
	if perr := <-done; perr != nil {
		return errClose{perr}
	}
	return cerr
}

// drainWriter forwards to w until w fails, then discards.
type drainWriter struct {
	w    io.Writer
	dead bool
}

func (d *drainWriter) Write(p []byte) (int, error) {
	if !d.dead {
		if _, err := d.w.Write(p); err == nil {
			return len(p), nil
		}
		d.dead = true
	}
	return len(p), nil
}

// framed produces a framed payload (≥1.23/1.25 uploads).
func (c *conn) framed(dst io.Writer) error {
	_, err := io.Copy(dst, wire.NewFramedReader(c.r, 0))
	return err
}

// inlineNAR produces a NAR sent inline, without framing (old clients).
func (c *conn) inlineNAR(dst io.Writer) error { return wire.CopyNAR(dst, c.r) }

// tunnelledNAR pulls a NAR with STDERR_READ (1.21–1.22 AddToStoreNar).
func (c *conn) tunnelledNAR(dst io.Writer) error {
	return wire.CopyNAR(dst, wire.NewReader(wire.NewTunnelReader(c.r, c.w, 64<<10, c.lockWriter)))
}

func opAddToStore(c *conn) error {
	if !c.v.AtLeast(25) {
		return opAddToStoreOld(c)
	}
	req, err := c.addToStoreArgs()
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	var info wire.ValidPathInfo
	err = c.upload(c.framed, func(src io.Reader) (err error) {
		info, err = c.b.AddToStore(c.opContext(), req, src)
		return err
	})
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { wire.WriteValidPathInfo(w, c.v, info) })
}

// addToStoreArgs reads the ≥1.25 AddToStore arguments before the framed data.
func (c *conn) addToStoreArgs() (AddToStoreRequest, error) {
	var req AddToStoreRequest
	name, err := c.r.String(wire.MaxSmallString, "name")
	if err != nil {
		return req, err
	}
	cam, err := c.r.String(wire.MaxSmallString, "content-address method")
	if err != nil {
		return req, err
	}
	if req.References, err = c.pathSet("references"); err != nil {
		return req, err
	}
	if req.Repair, err = c.r.Bool(); err != nil {
		return req, err
	}
	req.Name = name
	if err := checkName(name, name); err != nil {
		return req, err
	}
	if req.Method, req.Algo, err = wire.ParseContentAddressMethod(cam); err != nil {
		return req, Errorf("%v", err)
	}
	return req, nil
}

// opAddToStoreOld is AddToStore of clients before 1.25: a NAR inline, the path as reply.
func opAddToStoreOld(c *conn) error {
	name, err := c.r.String(wire.MaxSmallString, "name")
	if err != nil {
		return err
	}
	fixed, err := c.r.Bool()
	if err != nil {
		return err
	}
	recursive, err := c.r.Uint(1, "recursive flag")
	if err != nil {
		return err
	}
	algo, err := c.r.String(wire.MaxSmallString, "hash algorithm")
	if err != nil {
		return err
	}
	req := AddToStoreRequest{Name: name, Method: "nar", Algo: algo}
	if !fixed { // compatibility: "not fixed" always meant sha256, recursive
		req.Algo = "sha256"
	} else if recursive == 0 {
		req.Method, req.FlatInNAR = "flat", true
	}
	if err := checkName(name, name); err != nil {
		return err
	}
	if _, _, err := wire.ParseContentAddressMethod("fixed:" + req.Algo); err != nil {
		return Errorf("%v", err)
	}
	if err := c.begin(); err != nil {
		return err
	}
	var info wire.ValidPathInfo
	err = c.upload(c.inlineNAR, func(src io.Reader) (err error) {
		info, err = c.b.AddToStore(c.opContext(), req, src)
		return err
	})
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.String(info.Path) })
}

func opAddTextToStore(c *conn) error {
	name, err := c.r.String(wire.MaxSmallString, "name")
	if err != nil {
		return err
	}
	text, err := c.r.String(wire.MaxTextLen, "text")
	if err != nil {
		return err
	}
	refs, err := c.pathSet("references")
	if err != nil {
		return err
	}
	if err := checkName(name, name); err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	p, err := c.b.AddTextToStore(c.opContext(), name, text, refs)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.String(p) })
}

func opAddToStoreNar(c *conn) error {
	info, err := pathInfo(c.r, c.sess.StoreDir)
	if err != nil {
		return err
	}
	req := AddToStoreNarRequest{Info: info}
	if req.Repair, err = c.r.Bool(); err != nil {
		return err
	}
	if req.DontCheckSigs, err = c.r.Bool(); err != nil {
		return err
	}
	if !c.sess.Trusted {
		req.DontCheckSigs, req.Info.Ultimate = false, false
	}
	if err := c.begin(); err != nil {
		return err
	}
	produce := c.framed
	switch {
	case !c.v.AtLeast(21):
		produce = c.inlineNAR
	case !c.v.AtLeast(23):
		produce = c.tunnelledNAR
	}
	err = c.upload(produce, func(src io.Reader) error { return c.b.AddToStoreNar(c.opContext(), req, src) })
	if err != nil {
		return err
	}
	return c.reply(nil)
}

func opAddMultipleToStore(c *conn) error {
	repair, err := c.r.Bool()
	if err != nil {
		return err
	}
	dontCheckSigs, err := c.r.Bool()
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	dontCheckSigs = dontCheckSigs && c.sess.Trusted
	err = c.upload(c.framed, func(src io.Reader) error { return c.addMultiple(src, repair, dontCheckSigs) })
	if err != nil {
		return err
	}
	return c.reply(nil)
}

// addMultiple reads AddMultipleToStore's payload: a count, then (ValidPathInfo, NAR) pairs.
func (c *conn) addMultiple(src io.Reader, repair, dontCheckSigs bool) error {
	r := wire.NewReader(src)
	n, err := r.Uint(wire.MaxCount, "number of paths")
	if err != nil {
		return Errorf("%v", err)
	}
	for range n {
		r.SetBudget(argBudget)
		info, err := pathInfo(r, c.sess.StoreDir)
		if err != nil {
			return Errorf("%v", err)
		}
		info.Ultimate = false
		nar := io.LimitReader(r, int64(min(info.NarSize, 1<<62)))
		req := AddToStoreNarRequest{Info: info, Repair: repair, DontCheckSigs: dontCheckSigs}
		if err := c.b.AddToStoreNar(c.opContext(), req, nar); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, nar); err != nil {
			return err
		}
	}
	return nil
}

func opAddBuildLog(c *conn) error {
	drv, err := c.r.String(wire.MaxSmallString, "derivation")
	if err != nil {
		return err
	}
	// Drain the log first: Nix 2.8 refuses before reading it and loses its place.
	if err := wire.NewFramedReader(c.r, 0).Drain(); err != nil {
		return err
	}
	if err := checkStorePath(c.sess.StoreDir, c.sess.StoreDir+"/"+drv); err != nil {
		return err
	}
	return c.notImplemented()
}

func opNarFromPath(c *conn) error {
	p, err := c.path("path")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	nw := &narWriter{c: c}
	err = c.b.NarFromPath(c.opContext(), p, nw)
	if nw.started {
		if err != nil {
			return errAbort{err}
		}
		return c.w.Flush()
	}
	if err != nil {
		return err
	}
	return c.reply(nil)
}

// narWriter sends STDERR_LAST before the first NAR byte; from then on the stream is raw NAR.
type narWriter struct {
	c       *conn
	started bool
}

func (n *narWriter) Write(p []byte) (int, error) {
	defer n.c.lockWriter()()
	if !n.started {
		n.started = true
		n.c.w.StderrLast()
		n.c.inWork = false
	}
	return n.c.w.Write(p)
}

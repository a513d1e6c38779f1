package wire

import (
	"io"
)

// FramedReader reads a framed payload (§1.4): frames of u64 n > 0 and n raw bytes, ended by u64 0.
// It never allocates for frame contents; the caller's buffer receives them.
type FramedReader struct {
	r       *Reader
	left    uint64 // bytes left in the current frame
	done    bool   // the terminator was read
	max     uint64 // total payload cap; 0 = none
	total   uint64
	lastErr error
}

// NewFramedReader reads a framed payload from r, refusing more than max bytes in total (0 = no cap).
func NewFramedReader(r *Reader, max uint64) *FramedReader { return &FramedReader{r: r, max: max} }

// Read returns payload bytes; io.EOF after the terminator.
func (f *FramedReader) Read(p []byte) (int, error) {
	if f.lastErr != nil {
		return 0, f.lastErr
	}
	for f.left == 0 {
		if f.done {
			return 0, io.EOF
		}
		n, err := f.r.U64()
		if err != nil {
			f.lastErr = err
			return 0, err
		}
		if n == 0 {
			f.done = true
			return 0, io.EOF
		}
		if f.max != 0 && (n > f.max || f.total > f.max-n) {
			f.lastErr = protoErr("framed data exceeds the limit of %d bytes", f.max)
			return 0, f.lastErr
		}
		f.total += n
		f.left = n
	}
	if uint64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= uint64(n)
	if err != nil {
		f.lastErr = eof(err)
	}
	return n, f.lastErr
}

// Drain reads and discards the rest of the payload up to and including the terminator,
// so the next operation starts at the right byte even after a failure half-way.
func (f *FramedReader) Drain() error {
	_, err := io.Copy(io.Discard, f)
	return err
}

// Done reports whether the terminator has been read.
func (f *FramedReader) Done() bool { return f.done }

// FramedWriter writes a framed payload: each Write becomes one frame, Close writes the terminator.
type FramedWriter struct{ w *Writer }

// NewFramedWriter frames writes to w.
func NewFramedWriter(w *Writer) *FramedWriter { return &FramedWriter{w: w} }

// Write sends p as one frame (nothing for an empty p).
func (f *FramedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, f.w.Err()
	}
	f.w.U64(uint64(len(p)))
	return f.w.Write(p)
}

// Close writes the terminator and flushes.
func (f *FramedWriter) Close() error {
	f.w.U64(0)
	return f.w.Flush()
}

// TunnelReader is the old way (§1.5) of pulling client data: each Read sends STDERR_READ
// asking for up to len(p) bytes and reads the client's answer; an empty answer is the end.
type TunnelReader struct {
	r     *Reader
	w     *Writer
	lock  func() func() // serialises writes with other senders; may be nil
	chunk int
	buf   []byte
	eof   bool
}

// NewTunnelReader pulls data from the client through r/w, at most chunk bytes per request.
// lock, if non-nil, is called around each request and returns the unlock function.
func NewTunnelReader(r *Reader, w *Writer, chunk int, lock func() func()) *TunnelReader {
	return &TunnelReader{r: r, w: w, chunk: chunk, lock: lock}
}

// Read implements io.Reader.
func (t *TunnelReader) Read(p []byte) (int, error) {
	if len(t.buf) == 0 {
		if t.eof {
			return 0, io.EOF
		}
		if err := t.fill(min(len(p), t.chunk)); err != nil {
			return 0, err
		}
		if t.eof {
			return 0, io.EOF
		}
	}
	n := copy(p, t.buf)
	t.buf = t.buf[n:]
	return n, nil
}

func (t *TunnelReader) fill(want int) error {
	if t.lock != nil {
		defer t.lock()()
	}
	t.w.StderrRead(uint64(want))
	if err := t.w.Flush(); err != nil {
		return err
	}
	b, err := t.r.Bytes(want, "STDERR_READ reply")
	if err != nil {
		return err
	}
	t.buf = b
	t.eof = len(b) == 0
	return nil
}

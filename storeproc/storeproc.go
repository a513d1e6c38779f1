// Package storeproc is the store worker: it writes one upload, read from a
// pipe, beneath one staging directory, as a throw-away unprivileged uid.
//
// The monitor execs privnix-storeproc for each upload and answers its Hello
// with a StoreJob and two fds, the staging directory and the read end of the
// data pipe the frontend writes to (ipc/msg/store.go has the sequence). The
// worker confines itself, writes "out" beneath the directory — the NAR
// restored strictly (FormatNAR) or a 0444 regular file with the bytes
// (FormatFlat) — answers Staged or Error, and exits. It never runs a second
// job, and its memory is bounded whatever the upload's size: bytes stream
// through buffers of at most 1 MiB.
package storeproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"privnix/internal/narfs"
	"privnix/ipc"
	"privnix/ipc/msg"
	"privnix/nix/narreader"
)

// OutName is the name of what the worker writes beneath the staging
// directory.
const OutName = "out"

// Buffer sizes: the NAR reader reads small tokens, so its source is
// buffered; flat files are copied in chunks. narfs copies file contents in
// 1 MiB chunks of its own.
const (
	narBufSize  = 64 << 10
	flatBufSize = 1 << 20
)

// Job is the one job of a worker: the monitor's StoreJob and its two fds.
type Job struct {
	msg.StoreJob
	Dir  *os.File // the staging directory: a directory owned by this uid, mode 0700
	Data *os.File // the data pipe's read end
}

// Close closes the job's fds.
func (j *Job) Close() {
	j.Dir.Close()
	j.Data.Close()
}

// AwaitJob says Hello on the monitor channel and receives the one job. It
// checks the fds before anything reads from them: [0] must be a directory
// owned by this process's uid that nobody else may write to, [1] a pipe.
// Any error means the monitor got the protocol wrong; the worker exits.
func AwaitJob(mon *ipc.Conn) (*Job, error) {
	if err := mon.Send(&msg.Hello{}); err != nil {
		return nil, err
	}
	return nextJob(mon)
}

func (j *Job) check() error {
	var st unix.Stat_t
	if err := unix.Fstat(int(j.Dir.Fd()), &st); err != nil {
		return fmt.Errorf("staging directory: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != uint32(os.Geteuid()) || st.Mode&0o077 != 0 {
		return fmt.Errorf("staging directory: type %#o, owner %d, mode %#o; want a directory of uid %d, mode 0700",
			st.Mode&unix.S_IFMT, st.Uid, st.Mode&0o7777, os.Geteuid())
	}
	// A pipe and nothing else: a socket could bring fds in, a file could be
	// anything.
	if err := unix.Fstat(int(j.Data.Fd()), &st); err != nil {
		return fmt.Errorf("data fd: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fmt.Errorf("data fd: type %#o, want a pipe", st.Mode&unix.S_IFMT)
	}
	return nil
}

// Serve runs first, answers it, and while the job says More, receives the
// next one (StoreJob and the same two kinds of fds, no Hello) and runs it
// too: a new staging directory beside the first (WritableDir). It returns
// when a job without More is answered, or with the error that ends the
// worker.
func Serve(mon *ipc.Conn, first *Job, log *slog.Logger) error {
	for j := first; ; {
		ans := Run(j, log)
		more := j.More
		j.Close()
		if err := mon.Send(ans); err != nil || !more {
			return err
		}
		var err error
		if j, err = nextJob(mon); err != nil {
			return err
		}
	}
}

// WritableDir opens the directory the worker's confinement lets it write
// beneath: its staging directory, or for a job with More (never with
// SharedUID), that directory's parent, the staging root, where every later
// job's directory will be. The staging root is root's 0700: through it the
// worker reaches only directories whose uid it has, which the monitor hands
// it one job at a time. The caller closes the fd after confining.
func WritableDir(j *Job) (int, error) {
	name := "."
	if j.More && !j.SharedUID {
		name = ".."
	}
	fd, err := unix.Openat(int(j.Dir.Fd()), name, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening the writable directory: %w", err)
	}
	return fd, nil
}

// nextJob receives a job — StoreJob and its two fds — and checks the fds
// (see AwaitJob).
func nextJob(mon *ipc.Conn) (*Job, error) {
	m, fds, err := mon.Recv()
	if err != nil {
		return nil, err
	}
	sj, ok := m.(*msg.StoreJob)
	if !ok || len(fds) != 2 {
		for _, f := range fds {
			f.Close()
		}
		return nil, fmt.Errorf("monitor sent %v with %d fds, want a StoreJob", m.Kind(), len(fds))
	}
	j := &Job{StoreJob: *sj, Dir: fds[0], Data: fds[1]}
	if err := j.check(); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// Run does the job and returns the answer for the monitor: *msg.Staged, or
// *msg.Error (ClassPolicy with a reason for the user when the upload is at
// fault, ClassInternal otherwise). Details of internal errors go to log.
func Run(j *Job, log *slog.Logger) msg.Message {
	src := &limitedReader{r: j.Data, max: j.MaxBytes}
	var (
		size uint64
		err  error
	)
	switch j.Format {
	case msg.FormatNAR:
		size, err = restoreNAR(src, int(j.Dir.Fd()), narreader.Limits{
			MaxDepth:     int(j.MaxDepth),
			MaxEntries:   int(j.MaxEntries),
			MaxNameLen:   int(j.MaxNameLen),
			MaxTargetLen: int(j.MaxTargetLen),
			MaxTotal:     j.MaxBytes,
		})
	case msg.FormatFlat:
		size, err = writeFlat(src, int(j.Dir.Fd()))
	default: // Validate refuses others; never reached
		err = fmt.Errorf("format %d", j.Format)
	}
	if err != nil {
		e := refusal(err, j.MaxBytes)
		if e.Class == msg.ClassInternal {
			log.Error("upload failed", "format", j.Format, "bytes", src.n, "err", err)
		}
		return e
	}
	return &msg.Staged{NarSize: size, Bytes: src.n}
}

// restoreNAR restores the NAR read from src as OutName beneath dirfd, then
// requires the end of the upload. It returns the NAR's size.
func restoreNAR(src *limitedReader, dirfd int, lim narreader.Limits) (uint64, error) {
	br := bufio.NewReaderSize(src, narBufSize)
	if err := narfs.Restore(br, dirfd, OutName, lim); err != nil {
		return 0, err
	}
	size := src.n - uint64(br.Buffered())
	if err := requireEOF(br); err != nil {
		return 0, err
	}
	return size, nil
}

// writeFlat copies src into a new regular file OutName beneath dirfd, mode
// 0444, and returns its size.
func writeFlat(src *limitedReader, dirfd int) (uint64, error) {
	fd, err := unix.Openat(dirfd, OutName, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", OutName, err)
	}
	f := os.NewFile(uintptr(fd), OutName)
	defer f.Close()
	buf := make([]byte, flatBufSize)
	// onlyWriter hides f's ReadFrom, so that the copy is plain reads and
	// writes through buf (copy_file_range and splice are not in the
	// seccomp filter, and ReadFrom's fallback would allocate its own buffer).
	n, err := io.CopyBuffer(onlyWriter{f}, src, buf)
	if err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("closing %s: %w", OutName, err)
	}
	return uint64(n), nil
}

type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// errTrailing: bytes follow the end of the NAR.
var errTrailing = errors.New("bytes after the end of the NAR")

// requireEOF reads one more byte: there must be none.
func requireEOF(r io.Reader) error {
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		switch {
		case n > 0:
			return errTrailing
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
}

// errTooLarge: the upload has more than the job's MaxBytes bytes.
var errTooLarge = errors.New("upload larger than the limit")

// limitedReader counts the bytes read from r and fails with errTooLarge, as
// soon as r offers one more, once max have been read.
type limitedReader struct {
	r   io.Reader
	max uint64
	n   uint64
	err error
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// One byte past max may be read, to tell "exactly max" from "more".
	if room := l.max - l.n + 1; uint64(len(p)) > room {
		p = p[:room]
	}
	n, err := l.r.Read(p)
	if l.n+uint64(n) > l.max {
		n = int(l.max - l.n)
		l.err = errTooLarge
		err = errTooLarge
	} else if err != nil {
		l.err = err
	}
	l.n += uint64(n)
	return n, err
}

// reasons says, for each way the NAR reader refuses an archive, what is
// wrong with it, for the user.
var reasons = map[error]string{
	narreader.ErrMagic:                   "it does not start with the NAR magic",
	narreader.ErrUnexpectedToken:         "unexpected token",
	narreader.ErrTokenTooLong:            "a token is too long",
	narreader.ErrUnknownType:             "unknown file type",
	narreader.ErrMissingContents:         "regular file without contents",
	narreader.ErrExecutableValue:         "executable marker with a value",
	narreader.ErrExecutableAfterContents: "executable marker after the contents",
	narreader.ErrEmptyName:               "empty NAR entry name",
	narreader.ErrDotName:                 `NAR entry named "." or ".."`,
	narreader.ErrSlashName:               "NAR entry name contains '/'",
	narreader.ErrNULName:                 "NAR entry name contains NUL",
	narreader.ErrNameTooLong:             "NAR entry name too long",
	narreader.ErrNotSorted:               "NAR entry names are not sorted",
	narreader.ErrDuplicateEntry:          "duplicate NAR entry name",
	narreader.ErrEmptyTarget:             "empty symlink target",
	narreader.ErrNULTarget:               "symlink target contains NUL",
	narreader.ErrTargetTooLong:           "symlink target too long",
	narreader.ErrPadding:                 "non-zero padding",
	narreader.ErrTruncated:               "unexpected end of the upload",
	narreader.ErrTooDeep:                 "directories nested too deep",
	narreader.ErrTooManyEntries:          "too many directory entries",
}

// refusal turns a job's error into the Error the monitor gets.
func refusal(err error, maxBytes uint64) *msg.Error {
	var ne *narreader.Error
	switch {
	case errors.Is(err, errTooLarge):
		return msg.Errorf(msg.ClassPolicy, "the upload is larger than the limit of %d bytes", maxBytes)
	case errors.Is(err, errTrailing):
		return msg.Errorf(msg.ClassPolicy, "the NAR is malformed: %v", err)
	case errors.As(err, &ne):
		if ne.Err == narreader.ErrTooLarge {
			return msg.Errorf(msg.ClassPolicy, "the upload is larger than the limit of %d bytes (%s)", maxBytes, ne.Detail)
		}
		reason, ok := reasons[ne.Err]
		if !ok {
			reason = ne.Err.Error()
		}
		return msg.Errorf(msg.ClassPolicy, "the NAR is malformed: %s (at byte %d: %s)", reason, ne.Offset, ne.Detail)
	case errors.Is(err, narfs.ErrTooDeep):
		return msg.Errorf(msg.ClassPolicy, "the NAR is malformed: directories nested more than %d deep", narfs.MaxDepth)
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return msg.Errorf(msg.ClassInternal, "no space left for the upload")
	}
	return msg.Errorf(msg.ClassInternal, "the store worker failed")
}

package storeproc

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"golang.org/x/sys/unix"

	"privnix/ipc/msg"
	"privnix/nix/narreader"
)

func TestLimitedReader(t *testing.T) {
	for _, tc := range []struct {
		max, size uint64
		tooLarge  bool
	}{
		{0, 0, false}, {0, 1, true}, {10, 9, false}, {10, 10, false}, {10, 11, true}, {10, 1 << 20, true},
	} {
		// One byte at a time and in large reads.
		for _, oneByte := range []bool{true, false} {
			var r io.Reader = io.LimitReader(endless{}, int64(tc.size))
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			l := &limitedReader{r: r, max: tc.max}
			n, err := io.Copy(io.Discard, l)
			if tc.tooLarge {
				if !errors.Is(err, errTooLarge) || l.n != tc.max || uint64(n) != tc.max {
					t.Errorf("max %d size %d: read %d (counted %d), %v; want %d, errTooLarge", tc.max, tc.size, n, l.n, err, tc.max)
				}
				if _, err := l.Read(make([]byte, 1)); !errors.Is(err, errTooLarge) {
					t.Errorf("max %d size %d: read after the refusal: %v", tc.max, tc.size, err)
				}
			} else if err != nil || uint64(n) != tc.size || l.n != tc.size {
				t.Errorf("max %d size %d: read %d (counted %d), %v", tc.max, tc.size, n, l.n, err)
			}
		}
	}
}

func TestRequireEOF(t *testing.T) {
	if err := requireEOF(strings.NewReader("")); err != nil {
		t.Errorf("empty: %v", err)
	}
	if err := requireEOF(strings.NewReader("x")); !errors.Is(err, errTrailing) {
		t.Errorf("one byte: %v", err)
	}
	if err := requireEOF(iotest.ErrReader(io.ErrClosedPipe)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("read error: %v", err)
	}
}

// TestRefusalReasons: every refusal of the NAR reader has a reason of its
// own, and every error class is what the monitor expects.
func TestRefusalReasons(t *testing.T) {
	sentinels := []error{narreader.ErrMagic, narreader.ErrUnexpectedToken, narreader.ErrTokenTooLong,
		narreader.ErrUnknownType, narreader.ErrMissingContents, narreader.ErrExecutableValue,
		narreader.ErrExecutableAfterContents, narreader.ErrEmptyName, narreader.ErrDotName,
		narreader.ErrSlashName, narreader.ErrNULName, narreader.ErrNameTooLong, narreader.ErrNotSorted,
		narreader.ErrDuplicateEntry, narreader.ErrEmptyTarget, narreader.ErrNULTarget,
		narreader.ErrTargetTooLong, narreader.ErrPadding, narreader.ErrTruncated, narreader.ErrTooDeep,
		narreader.ErrTooManyEntries}
	seen := map[string]error{}
	for _, s := range sentinels {
		e := refusal(&narreader.Error{Offset: 7, Err: s, Detail: "d"}, 100)
		if e.Class != msg.ClassPolicy || !strings.HasPrefix(e.Message, "the NAR is malformed: ") || !strings.HasSuffix(e.Message, " (at byte 7: d)") {
			t.Errorf("%v: %d %q", s, e.Class, e.Message)
		}
		if prev, dup := seen[reasons[s]]; dup || reasons[s] == "" {
			t.Errorf("%v: reason %q shared with %v", s, reasons[s], prev)
		}
		seen[reasons[s]] = s
	}
	if len(reasons) != len(sentinels) {
		t.Errorf("%d reasons for %d sentinels", len(reasons), len(sentinels))
	}
	for _, tc := range []struct {
		err   error
		class uint64
		text  string
	}{
		{&narreader.Error{Err: narreader.ErrTooLarge, Detail: "d"}, msg.ClassPolicy, "the upload is larger than the limit of 100 bytes (d)"},
		{errTooLarge, msg.ClassPolicy, "the upload is larger than the limit of 100 bytes"},
		{errTrailing, msg.ClassPolicy, "the NAR is malformed: bytes after the end of the NAR"},
		{&os.PathError{Op: "write", Path: "out", Err: unix.ENOSPC}, msg.ClassInternal, "no space left for the upload"},
		{io.ErrClosedPipe, msg.ClassInternal, "the store worker failed"},
	} {
		e := refusal(tc.err, 100)
		if e.Class != tc.class || e.Message != tc.text || e.Validate() != nil {
			t.Errorf("%v: %d %q, want %d %q", tc.err, e.Class, e.Message, tc.class, tc.text)
		}
	}
}

func TestFindFDs(t *testing.T) {
	// One end of each of two pipes (both ends of a pipe are one inode).
	r, r2, err := os.Pipe()
	must(t, err)
	r2.Close()
	w2, w, err := os.Pipe()
	must(t, err)
	w2.Close()
	defer w.Close()
	ids, err := IdentifyFDs(int(r.Fd()), int(w.Fd()))
	must(t, err)
	// A dup, the original closed: the file is found on its new fd.
	f, err := dupFile(r)
	must(t, err)
	defer f.Close()
	r.Close()
	fds, err := FindFDs(ids)
	must(t, err)
	if fds[0] != int(f.Fd()) || fds[1] != int(w.Fd()) {
		t.Errorf("found %v, want [%d %d]", fds, f.Fd(), w.Fd())
	}
	// Held twice: refused.
	g, err := dupFile(w)
	must(t, err)
	if _, err := FindFDs(ids); err == nil {
		t.Error("a file held by two fds was accepted")
	}
	g.Close()
	// Held by none: refused.
	f.Close()
	if _, err := FindFDs(ids); err == nil {
		t.Error("a file held by no fd was accepted")
	}
}

func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

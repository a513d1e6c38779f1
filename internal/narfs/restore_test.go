package narfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"privnix/internal/narfs/narfstest"

	"privnix/nix/nar"
	"privnix/nix/narreader"

	"privnix/internal/testvectors"
)

func openDir(t testing.TB, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestRestoreNixDump restores nix-store --dump output and re-dumps it identically.
func TestRestoreNixDump(t *testing.T) {
	base := t.TempDir()
	out := filepath.Join(base, "out")
	must(t, os.Mkdir(out, 0o755))
	outfd := openDir(t, out)
	for seed := int64(20); seed < 30; seed++ {
		src := filepath.Join(base, fmt.Sprint(seed))
		narfstest.GenTree(t, src, seed, seed == 20)
		want := nixDump(t, src)
		name := fmt.Sprintf("r%d", seed)
		if err := Restore(bytes.NewReader(want), outfd, name, narreader.Limits{}); err != nil {
			t.Fatalf("seed %d: Restore: %v", seed, err)
		}
		if got := ourDump(t, filepath.Join(out, name)); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: restored tree dumps differently (%d vs %d bytes)", seed, len(got), len(want))
		}
	}
}

// TestNixRestoresOurDump runs nix-store --restore on our dump and dumps it again.
func TestNixRestoresOurDump(t *testing.T) {
	base := t.TempDir()
	for seed := int64(40); seed < 46; seed++ {
		src := filepath.Join(base, fmt.Sprint(seed))
		narfstest.GenTree(t, src, seed, false)
		ours := ourDump(t, src)
		dst := filepath.Join(base, fmt.Sprintf("nix%d", seed))
		cmd := exec.Command(nixTool(t, "nix-store"), "--restore", dst)
		cmd.Stdin = bytes.NewReader(ours)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("seed %d: nix-store --restore: %v\n%s", seed, err, out)
		}
		if again := ourDump(t, dst); !bytes.Equal(again, ours) {
			t.Fatalf("seed %d: nix's restore of our dump dumps differently", seed)
		}
	}
}

func TestRestoreModesAndSparse(t *testing.T) {
	base := t.TempDir()
	var b bytes.Buffer
	w := nar.NewWriter(&b)
	zeros := make([]byte, 3<<20+5)
	zeros[len(zeros)-1] = 'z'       // a hole followed by data
	trailing := make([]byte, 2<<20) // ends in a hole
	trailing[0] = 'a'
	calls := []func() error{
		w.StartDir,
		func() error { return w.Entry("exec") },
		func() error { return w.File(true, 2, bytes.NewReader([]byte("#!"))) },
		func() error { return w.Entry("hole-end") },
		func() error { return w.File(false, uint64(len(trailing)), bytes.NewReader(trailing)) },
		func() error { return w.Entry("hole-start") },
		func() error { return w.File(false, uint64(len(zeros)), bytes.NewReader(zeros)) },
		func() error { return w.Entry("sub") },
		w.StartDir, w.EndDir,
		w.EndDir, w.Close,
	}
	for _, c := range calls {
		must(t, c())
	}
	fd := openDir(t, base)
	must(t, Restore(bytes.NewReader(b.Bytes()), fd, "t", narreader.Limits{}))
	checks := []struct {
		name string
		mode os.FileMode
		data []byte
	}{
		{"exec", 0o555, []byte("#!")},
		{"hole-end", 0o444, trailing},
		{"hole-start", 0o444, zeros},
		{"sub", os.ModeDir | 0o755, nil},
	}
	for _, c := range checks {
		p := filepath.Join(base, "t", c.name)
		fi, err := os.Lstat(p)
		must(t, err)
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.name, fi.Mode(), c.mode)
		}
		if c.data != nil {
			got, err := os.ReadFile(p)
			must(t, err)
			if !bytes.Equal(got, c.data) {
				t.Errorf("%s: contents differ", c.name)
			}
		}
	}
	if got := ourDump(t, filepath.Join(base, "t")); !bytes.Equal(got, b.Bytes()) {
		t.Error("restored tree dumps differently")
	}
}

func TestRestoreRefuses(t *testing.T) {
	vec := filepath.Join(vectorsDir(t), "libutil-nars")
	base := t.TempDir()
	fd := openDir(t, base)
	must(t, os.Mkdir(filepath.Join(base, "exists"), 0o755))
	must(t, os.Symlink("/tmp", filepath.Join(base, "link")))
	good, err := os.ReadFile(filepath.Join(vec, "regular-one-byte-zero-padding.nar"))
	must(t, err)
	tests := []struct {
		name, file, into string
		want             error
	}{
		{"existing dir", "", "exists", syscall.EEXIST},
		{"existing symlink", "", "link", syscall.EEXIST},
		{"path as name", "", "exists/x", nar.ErrName},
		{"dotdot name", "", "..", nar.ErrName},
		{"dotdot entry", "dotdot.nar", "a", narreader.ErrDotName},
		{"slash entry", "slash.nar", "b", narreader.ErrSlashName},
		{"bad padding", "regular-one-byte-non-zero-padding.nar", "c", narreader.ErrPadding},
		{"truncated", "regular-truncated-padding.nar", "d", narreader.ErrTruncated},
		{"executable after contents", "executable-after-contents.nar", "e", narreader.ErrExecutableAfterContents},
	}
	for _, tc := range tests {
		data := good
		if tc.file != "" {
			data, err = os.ReadFile(filepath.Join(vec, tc.file))
			must(t, err)
		}
		err := Restore(bytes.NewReader(data), fd, tc.into, narreader.Limits{})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	entries, err := os.ReadDir(filepath.Join(base, "exists"))
	must(t, err)
	if len(entries) != 0 {
		t.Errorf("restore wrote into an existing directory: %v", entries)
	}
}

// vectorsDir finds ../shared/vectors/nix beside the repository root.
func vectorsDir(t testing.TB) string {
	return testvectors.Dir(t)
}

// FuzzRestore unpacks arbitrary input into a fresh directory; whatever is
// accepted must dump back to exactly the bytes that were read.
func FuzzRestore(f *testing.F) {
	f.Add([]byte{})
	base := f.TempDir()
	fd := openDir(f, base)
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		n++
		name := fmt.Sprintf("r%d", n)
		src := bytes.NewReader(data)
		lim := narreader.Limits{MaxDepth: 32, MaxEntries: 200, MaxTotal: 1 << 20}
		if err := Restore(src, fd, name, lim); err != nil {
			return
		}
		defer os.RemoveAll(filepath.Join(base, name))
		var out bytes.Buffer
		if err := Dump(&out, fd, name); err != nil {
			t.Fatalf("restored tree does not dump: %v", err)
		}
		if consumed := data[:len(data)-src.Len()]; !bytes.Equal(out.Bytes(), consumed) {
			t.Fatalf("restored tree dumps to %d bytes that differ from the %d read", out.Len(), len(consumed))
		}
	})
}

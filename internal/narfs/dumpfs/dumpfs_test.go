package dumpfs

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"privnix/internal/narfs/narfstest"
)

func TestDumpMatchesNix(t *testing.T) {
	base := t.TempDir()
	for seed := int64(1); seed <= 12; seed++ {
		root := filepath.Join(base, fmt.Sprint(seed))
		narfstest.GenTree(t, root, seed, seed == 1)
		paths := []string{root, filepath.Join(root, "empty-file"), filepath.Join(root, "dangling-abs"),
			filepath.Join(root, "exec-only-user"), filepath.Join(root, "empty-dir")}
		for _, p := range paths {
			got, want := ourDump(t, p), nixDump(t, p)
			if !bytes.Equal(got, want) {
				t.Fatalf("seed %d: DumpPath(%s) differs from nix-store --dump (%d vs %d bytes)", seed, p, len(got), len(want))
			}
		}
	}
}

func TestDumpRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(t, unix.Mknod(filepath.Join(dir, "chr"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	must(t, err)
	defer l.Close()
	for _, name := range []string{"fifo", "chr", "sock"} {
		err := DumpPath(&bytes.Buffer{}, filepath.Join(dir, name))
		if !errors.Is(err, ErrUnsupportedType) {
			t.Errorf("dump of %s: got %v, want ErrUnsupportedType", name, err)
		}
	}
	if err := DumpPath(&bytes.Buffer{}, dir); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("dump of a dir holding a fifo: got %v, want ErrUnsupportedType", err)
	}
}

func TestDumpStaysBeneath(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "real"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "real", "f"), []byte("x"), 0o644))
	must(t, os.Symlink("real", filepath.Join(dir, "link")))
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	tests := []struct {
		name string
		want error
	}{
		{"link/f", syscall.ELOOP},                   // symlink in the middle is never followed
		{"../" + filepath.Base(dir), syscall.EXDEV}, // escaping dirfd is refused
		{"/etc", syscall.EXDEV},
		{"missing", syscall.ENOENT},
	}
	for _, tc := range tests {
		if err := Dump(&bytes.Buffer{}, fd, tc.name); !errors.Is(err, tc.want) {
			t.Errorf("Dump(%q) = %v, want %v", tc.name, err, tc.want)
		}
	}
	// The symlink itself is dumped as a symlink.
	var buf bytes.Buffer
	must(t, Dump(&buf, fd, "link"))
	if !bytes.Contains(buf.Bytes(), []byte("symlink")) {
		t.Errorf("Dump(link) did not produce a symlink node")
	}
}

func TestDumpDepthLimit(t *testing.T) {
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	// Build MaxDepth+1 nested directories through fds (paths would get too long).
	cur := fd
	for i := 0; i <= MaxDepth; i++ {
		must(t, unix.Mkdirat(cur, "d", 0o755))
		next, err := unix.Openat(cur, "d", unix.O_PATH|unix.O_DIRECTORY, 0)
		must(t, err)
		if cur != fd {
			unix.Close(cur)
		}
		cur = next
	}
	unix.Close(cur)
	if err := Dump(&bytes.Buffer{}, fd, "d"); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("Dump of %d nested dirs = %v, want ErrTooDeep", MaxDepth+1, err)
	}
	if err := Dump(&bytes.Buffer{}, fd, strings.Repeat("d/", 3)+"d"); err != nil {
		t.Fatalf("Dump of a shallower subtree: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// nixDump runs nix-store --dump on path, failing clearly without nix-bin.
func nixDump(t testing.TB, path string) []byte {
	t.Helper()
	tool, err := exec.LookPath("nix-store")
	if err != nil {
		t.Fatalf("nix-store not found: install Debian's nix-bin (Nix 2.8) to run the differential tests: %v", err)
	}
	out, err := exec.Command(tool, "--dump", path).Output()
	if err != nil {
		t.Fatalf("nix-store --dump %s: %v", path, err)
	}
	return out
}

// ourDump runs DumpPath on path.
func ourDump(t testing.TB, path string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := DumpPath(&buf, path); err != nil {
		t.Fatalf("DumpPath %s: %v", path, err)
	}
	return buf.Bytes()
}

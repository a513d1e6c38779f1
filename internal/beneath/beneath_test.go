package beneath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenRefusesSymlinksAndEscapes(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "d"), 0o755)
	os.WriteFile(filepath.Join(root, "d", "f"), []byte("x"), 0o644)
	os.Symlink("d", filepath.Join(root, "link"))
	os.Symlink(strings.Repeat("a", 300), filepath.Join(root, "long"))
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dir)
	for _, tc := range []struct {
		name  string
		flags int
		want  error
	}{
		{"d/f", unix.O_RDONLY, nil},
		{"link/f", unix.O_RDONLY, unix.ELOOP},
		{"link", unix.O_RDONLY, unix.ELOOP},
		{"link", unix.O_PATH, nil}, // the link itself
		{"../x", unix.O_PATH, unix.EXDEV},
		{"/etc/passwd", unix.O_RDONLY, unix.EXDEV},
	} {
		fd, err := Open(dir, tc.name, tc.flags, Resolve)
		if err != tc.want {
			t.Errorf("Open(%q): %v, want %v", tc.name, err, tc.want)
		}
		if err == nil {
			unix.Close(fd)
		}
	}
	fd, err := Open(dir, "long", unix.O_PATH, Resolve)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if got, err := Readlink(fd, 300); err != nil || got != strings.Repeat("a", 300) {
		t.Errorf("Readlink(300) = %d bytes, %v", len(got), err)
	}
	if _, err := Readlink(fd, 299); err == nil {
		t.Errorf("Readlink(299) of a 300-byte target succeeded")
	}
	if got := TypeName(unix.S_IFIFO); got != "fifo" {
		t.Errorf("TypeName(fifo) = %q", got)
	}
}

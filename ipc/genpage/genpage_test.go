package genpage

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// A View sees every Bump; nobody holding the fd can write or resize the
// page, or map it writable.
func TestViewFollowsAndCannotWrite(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	// What a frontend gets: its own fd to the memfd.
	fd, err := unix.Dup(int(p.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "passed")
	defer f.Close()
	v, err := Map(f)
	if err != nil {
		t.Fatal(err)
	}
	before := v.Load()
	p.Bump()
	p.Bump()
	if got := v.Load(); got != before+2 || got != p.Load() {
		t.Fatalf("view %d after two bumps from %d (page %d)", got, before, p.Load())
	}
	if _, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		t.Error("a writable shared mapping of the page succeeded")
	}
	if _, err := unix.Pwrite(fd, []byte{0xff}, 0); err == nil {
		t.Error("pwrite to the page succeeded")
	}
	if err := unix.Ftruncate(fd, 0); err == nil {
		t.Error("truncating the page succeeded")
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, 0); err == nil {
		t.Error("changing the seals succeeded")
	}
	if got := v.Load(); got != p.Load() {
		t.Fatalf("page changed by a failed write: view %d page %d", got, p.Load())
	}
}

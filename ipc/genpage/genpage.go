// Package genpage is the store generation page: one counter in a sealed
// memfd that the monitor bumps after every database commit (and when it
// reopens the store), and that frontends map read-only. A frontend keeps the
// answers of read-only queries only while the counter has not moved since it
// asked, so a cached answer is never older than the last write that returned.
//
// The monitor seals the memfd against writes through any other mapping or
// fd (F_SEAL_FUTURE_WRITE) and against resizing before it hands it out: a
// frontend can read the counter, never change it, so it cannot make another
// connection's frontend keep stale answers. The counter tells a frontend no
// more than it could see by watching the store directory change.
package genpage

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// size is the memfd's size: one page; the counter is its first 8 bytes.
const size = 4096

// seals are set by New.
const seals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_FUTURE_WRITE | unix.F_SEAL_SEAL

// Page is the monitor's writable mapping of the counter.
type Page struct {
	f   *os.File
	mem []byte
	n   *atomic.Uint64
}

// New creates the page, counter 1.
func New() (*Page, error) {
	fd, err := unix.MemfdCreate("privnix-store-generation", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("genpage: %w", os.NewSyscallError("memfd_create", err))
	}
	f := os.NewFile(uintptr(fd), "privnix-store-generation")
	mem, err := setUp(fd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("genpage: %w", err)
	}
	p := &Page{f: f, mem: mem, n: counter(mem)}
	p.n.Store(1)
	return p, nil
}

func setUp(fd int) ([]byte, error) {
	if err := unix.Ftruncate(fd, size); err != nil {
		return nil, os.NewSyscallError("ftruncate", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	// Our mapping stays writable; no new writable mapping, write(2) or
	// resize is possible after this, through any fd.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Munmap(mem)
		return nil, os.NewSyscallError("fcntl F_ADD_SEALS", err)
	}
	return mem, nil
}

func counter(mem []byte) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&mem[0])) }

// Bump moves the counter on: every answer cached before is out of date. A
// nil Page (none could be made) does nothing.
func (p *Page) Bump() {
	if p != nil {
		p.n.Add(1)
	}
}

// Load returns the counter.
func (p *Page) Load() uint64 { return p.n.Load() }

// File is the sealed memfd to hand to a frontend; the Page keeps owning it.
func (p *Page) File() *os.File { return p.f }

// View is a frontend's read-only mapping of the counter.
type View struct {
	mem []byte
	n   *atomic.Uint64
}

// Map maps the page the monitor handed over read-only; f may be closed
// afterwards. (The seals are the monitor's business: a frontend's seccomp
// filter does not let it ask for them, and it trusts the monitor anyway.)
func Map(f *os.File) (*View, error) {
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("genpage: %w", os.NewSyscallError("fstat", err))
	}
	if st.Size != size {
		return nil, fmt.Errorf("genpage: memfd of %d bytes, want %d", st.Size, size)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("genpage: %w", os.NewSyscallError("mmap", err))
	}
	return &View{mem: mem, n: counter(mem)}, nil
}

// Load returns the counter as the monitor last bumped it.
func (v *View) Load() uint64 { return v.n.Load() }

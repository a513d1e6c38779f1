// Package rawsock reads and writes non-blocking sockets with raw system
// calls. A raw call skips the Go scheduler's syscall bookkeeping
// (entersyscall/exitsyscall), which wakes the runtime's monitor thread
// (sysmon) whenever the process was idle: on a request/answer channel that is
// one or two extra thread wake-ups per message. That is only right for calls
// that cannot block, so every fd used here must be non-blocking (the runtime
// poller's sockets are); when one is not ready the call fails with EAGAIN and
// the caller waits in the poller (syscall.RawConn), never in the kernel.
package rawsock

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Recvmsg is recvmsg(2) on a non-blocking socket, without a source address.
// p must not be empty.
func Recvmsg(fd int, p, oob []byte, flags int) (n, oobn, recvflags int, err error) {
	msg := msghdr(p, oob)
	r, err := call(unix.SYS_RECVMSG, fd, unsafe.Pointer(msg), flags)
	if err != nil {
		return 0, 0, 0, err
	}
	return r, int(msg.Controllen), int(msg.Flags), nil
}

// Sendmsg is sendmsg(2) on a non-blocking socket, without a destination
// address. p must not be empty.
func Sendmsg(fd int, p, oob []byte, flags int) (int, error) {
	return call(unix.SYS_SENDMSG, fd, unsafe.Pointer(msghdr(p, oob)), flags)
}

// msghdr describes one buffer and its control data.
func msghdr(p, oob []byte) *unix.Msghdr {
	msg := &unix.Msghdr{Iov: &unix.Iovec{Base: &p[0]}}
	msg.Iov.SetLen(len(p))
	msg.SetIovlen(1)
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	return msg
}

// call makes the raw system call trap(fd, ptr, arg), again on EINTR.
func call(trap uintptr, fd int, ptr unsafe.Pointer, arg int) (int, error) {
	for {
		r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(ptr), uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

// read is read(2) on a non-blocking fd; p must not be empty.
func read(fd int, p []byte) (int, error) {
	return call(unix.SYS_READ, fd, unsafe.Pointer(&p[0]), len(p))
}

// write is write(2) on a non-blocking fd; p must not be empty. A peer that
// has gone makes it fail with EPIPE: the Go runtime ignores the SIGPIPE for
// fds other than 1 and 2.
func write(fd int, p []byte) (int, error) {
	return call(unix.SYS_WRITE, fd, unsafe.Pointer(&p[0]), len(p))
}

// Conn is a stream socket whose Read and Write use raw system calls. It stays
// registered with the runtime poller, which does the waiting, so deadlines and
// Close work as for the net.Conn it wraps.
type Conn struct {
	net.Conn
	rc syscall.RawConn
}

// NewConn wraps c, a stream socket from package net (it must implement
// syscall.Conn).
func NewConn(c net.Conn) (*Conn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("rawsock: not a socket from package net")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c, rc: rc}, nil
}

// Read reads what is available, waiting for at least one byte; io.EOF when
// the peer has shut down its side.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var err error
	if rerr := c.rc.Read(func(fd uintptr) bool {
		n, err = read(int(fd), p)
		return err != unix.EAGAIN
	}); rerr != nil {
		return 0, c.opError("read", rerr)
	}
	if err != nil {
		return 0, c.opError("read", os.NewSyscallError("read", err))
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, waiting while the socket buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	n := 0
	var err error
	rerr := c.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, e := write(int(fd), p[n:])
			if e == unix.EAGAIN {
				return false
			}
			if e != nil {
				err = e
				return true
			}
			n += m
		}
		return true
	})
	if rerr != nil {
		return n, c.opError("write", rerr)
	}
	if err != nil {
		return n, c.opError("write", os.NewSyscallError("write", err))
	}
	return n, nil
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

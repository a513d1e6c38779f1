// Package ipc is the framing of privnix's internal channels: one message per
// SOCK_SEQPACKET datagram, a 2-byte big-endian kind followed by the msgpack
// body, file descriptors on the same sendmsg as SCM_RIGHTS. It holds no
// business logic; the messages themselves live in ipc/msg.
package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"privnix/internal/rawsock"
	"privnix/ipc/msg"
)

// MaxFrame is the largest msgpack body of one message, in bytes, checked
// before decoding. SOCK_SEQPACKET keeps frames whole only below the socket
// send buffer (212992 bytes by default), so do not raise it: switch to a
// stream with a length prefix instead.
const MaxFrame = msg.MaxBody

// MaxFds is the largest number of fds one message may carry.
const MaxFds = msg.MaxFds

// headerLen is the size of the kind in front of every body.
const headerLen = 2

// recvBufLen is one byte more than the largest valid frame, so that an
// oversized frame is seen even where MSG_TRUNC would not be set.
const recvBufLen = headerLen + MaxFrame + 1

// keepSendBuf is the largest send buffer a Conn keeps between sends.
const keepSendBuf = 8 << 10

var recvBufs = sync.Pool{New: func() any { b := make([]byte, recvBufLen); return &b }}

var (
	// ErrViolation is wrapped by every receive error caused by the peer: the
	// caller kills the peer and closes the channel.
	ErrViolation = errors.New("ipc: protocol violation")
	// ErrInvalid is returned by Send for a message that fails its Validate,
	// has the wrong number of fds, or does not fit in MaxFrame. It is the
	// sender's bug, not the peer's.
	ErrInvalid = errors.New("ipc: refusing to send invalid message")
	// ErrWouldBlock is returned by TrySend when the message was not sent
	// because the channel is full or another send is in progress.
	ErrWouldBlock = errors.New("ipc: channel busy")
)

// Pair returns two connected SOCK_SEQPACKET sockets, close-on-exec.
func Pair() (a, b *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return os.NewFile(uintptr(fds[0]), "ipc-a"), os.NewFile(uintptr(fds[1]), "ipc-b"), nil
}

// Conn is one end of a channel. One goroutine may Send (or TrySend) while
// another Recvs; concurrent senders are serialised by a mutex, concurrent
// receivers are not allowed.
type Conn struct {
	uc *net.UnixConn
	rc syscall.RawConn

	sendMu sync.Mutex // guards sendBuf and the sendmsg call
	// sendBuf is reused between sends if small; guarded by sendMu.
	sendBuf []byte

	// oob belongs to the one receiver. The frame buffer comes from
	// recvBufs only once data is ready, so idle channels hold none.
	oob []byte

	dirMu    sync.RWMutex
	storeDir string // if set, every StorePath sent or received must lie in it
}

// NewConn makes a Conn from a SOCK_SEQPACKET socket and takes ownership of f
// (f is closed, even on error).
func NewConn(f *os.File) (*Conn, error) {
	defer f.Close()
	typ, err := sockType(f)
	if err != nil {
		return nil, err
	}
	if typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("ipc: %s is not a SOCK_SEQPACKET socket (type %d)", f.Name(), typ)
	}
	// FileConn dups the fd (close-on-exec), makes it non-blocking and
	// registers it with the runtime poller, so Close interrupts a blocked
	// Recv.
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("ipc: %w", err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("ipc: %s is not a unix socket", f.Name())
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("ipc: %w", err)
	}
	return &Conn{
		uc: uc,
		rc: rc,
		// Room for more fds than allowed, so that a peer sending a few too
		// many is seen as a wrong count, not as a truncated control message.
		oob: make([]byte, unix.CmsgSpace(4*(MaxFds+4))),
	}, nil
}

func sockType(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("ipc: %w", err)
	}
	var typ int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	}); err != nil {
		return 0, fmt.Errorf("ipc: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("ipc: %s: %w", f.Name(), os.NewSyscallError("getsockopt", serr))
	}
	return typ, nil
}

// SetStoreDir makes the Conn check, on Send and Recv, that every StorePath in
// a message lies directly in dir (see msg.CheckStoreDir). Until it is called
// (the monitor knows the store directory at once; a child learns it from
// HelloOK) store paths are checked for syntax only.
func (c *Conn) SetStoreDir(dir string) error {
	if err := msg.ValidStoreDir(dir); err != nil {
		return fmt.Errorf("ipc: %w", err)
	}
	c.dirMu.Lock()
	c.storeDir = dir
	c.dirMu.Unlock()
	return nil
}

func (c *Conn) getStoreDir() string {
	c.dirMu.RLock()
	defer c.dirMu.RUnlock()
	return c.storeDir
}

// Close closes the channel; a Recv blocked in another goroutine returns.
func (c *Conn) Close() error { return c.uc.Close() }

// SetReadDeadline makes Recv fail with an error wrapping
// os.ErrDeadlineExceeded after t (zero: no deadline), e.g. for a handshake.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// SetWriteDeadline makes a blocked Send fail with an error wrapping
// os.ErrDeadlineExceeded after t (zero: no deadline).
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.uc.SetWriteDeadline(t) }

// Send sends m with files (which stay owned by the caller). It refuses, with
// ErrInvalid, a message that fails Validate, is outside the store directory,
// has a number of files different from its kind's spec, or whose body exceeds
// MaxFrame.
func (c *Conn) Send(m msg.Message, files ...*os.File) error {
	return c.send(m, files, true)
}

// TrySend is Send that never waits: if the channel is full or another send is
// in progress it returns ErrWouldBlock and nothing is sent.
func (c *Conn) TrySend(m msg.Message, files ...*os.File) error {
	return c.send(m, files, false)
}

func (c *Conn) send(m msg.Message, files []*os.File, wait bool) error {
	spec, ok := msg.Lookup(m.Kind())
	if !ok {
		return fmt.Errorf("%w: unknown kind %#04x", ErrInvalid, uint16(m.Kind()))
	}
	if len(files) != spec.Fds {
		return fmt.Errorf("%w: %s with %d fds, want %d", ErrInvalid, spec.Name, len(files), spec.Fds)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, spec.Name, err)
	}
	if dir := c.getStoreDir(); dir != "" {
		if err := msg.CheckStoreDir(m, dir); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, spec.Name, err)
		}
	}
	if wait {
		c.sendMu.Lock()
	} else if !c.sendMu.TryLock() {
		return ErrWouldBlock
	}
	defer c.sendMu.Unlock()

	buf := binary.BigEndian.AppendUint16(c.sendBuf[:0], uint16(spec.Kind))
	buf, err := msg.Encode(buf, m)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if cap(buf) <= keepSendBuf {
		c.sendBuf = buf // keep for the next send
	}
	if len(buf)-headerLen > MaxFrame {
		return fmt.Errorf("%w: %s body of %d bytes exceeds MaxFrame", ErrInvalid, spec.Name, len(buf)-headerLen)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			if f == nil {
				return fmt.Errorf("%w: %s: file %d is nil", ErrInvalid, spec.Name, i)
			}
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	flags := unix.MSG_NOSIGNAL
	if !wait {
		flags |= unix.MSG_DONTWAIT
	}
	var serr error
	err = c.rc.Write(func(fd uintptr) bool {
		_, serr = rawsock.Sendmsg(int(fd), buf, oob, flags)
		return !(wait && serr == unix.EAGAIN)
	})
	runtime.KeepAlive(files) // their fds must stay open until sendmsg returns
	if err == nil {
		err = serr
	}
	if err != nil {
		if !wait && errors.Is(err, unix.EAGAIN) {
			return ErrWouldBlock
		}
		return fmt.Errorf("ipc: send %s: %w", spec.Name, os.NewSyscallError("sendmsg", err))
	}
	return nil
}

// Recv receives one message and the files that came with it (close-on-exec,
// owned by the caller). Every error caused by the peer wraps ErrViolation,
// and any fds that came with a bad message are closed. When the peer has
// closed its end, Recv returns io.EOF.
func (c *Conn) Recv() (msg.Message, []*os.File, error) {
	var (
		n, oobn, rflags int
		rerr            error
		bufp            *[]byte
	)
	err := c.rc.Read(func(fd uintptr) bool {
		if bufp == nil {
			bufp = recvBufs.Get().(*[]byte)
		}
		n, oobn, rflags, rerr = rawsock.Recvmsg(int(fd), *bufp, c.oob, unix.MSG_CMSG_CLOEXEC)
		if rerr == unix.EAGAIN {
			recvBufs.Put(bufp)
			bufp = nil
			return false // wait for readability
		}
		return true
	})
	if bufp != nil {
		// Decoded messages never alias the buffer (msgpack copies strings
		// and bytes out).
		defer recvBufs.Put(bufp)
	}
	if err == nil {
		err = rerr
	}
	if err != nil {
		if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return nil, nil, fmt.Errorf("ipc: recv: %w", net.ErrClosed)
		}
		return nil, nil, fmt.Errorf("ipc: recv: %w", os.NewSyscallError("recvmsg", err))
	}
	fds, cerr := parseRights(c.oob[:oobn])
	if rflags&unix.MSG_CTRUNC != 0 && cerr == nil {
		cerr = fmt.Errorf("%w: control message truncated", ErrViolation)
	}
	if cerr != nil {
		closeFds(fds)
		return nil, nil, cerr
	}
	if n == 0 && len(fds) == 0 {
		// A SEQPACKET peer that closed its end; a zero-length datagram
		// reads the same, and ends the channel too.
		return nil, nil, io.EOF
	}
	if rflags&unix.MSG_TRUNC != 0 {
		closeFds(fds)
		return nil, nil, fmt.Errorf("%w: frame larger than %d bytes", ErrViolation, recvBufLen)
	}
	m, err := decodeFrame((*bufp)[:n], len(fds), c.getStoreDir())
	if err != nil {
		closeFds(fds)
		return nil, nil, err
	}
	var files []*os.File
	if len(fds) > 0 {
		files = make([]*os.File, len(fds))
		for i, fd := range fds {
			files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("ipc-%s-fd%d", m.Kind(), i))
		}
	}
	return m, files, nil
}

// decodeFrame decodes one frame that came with nfds fds and checks its store
// paths against storeDir (if not empty). Every error wraps ErrViolation.
func decodeFrame(frame []byte, nfds int, storeDir string) (msg.Message, error) {
	if len(frame) < headerLen {
		return nil, fmt.Errorf("%w: frame of %d bytes", ErrViolation, len(frame))
	}
	if len(frame)-headerLen > MaxFrame {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds MaxFrame", ErrViolation, len(frame)-headerLen)
	}
	k := msg.Kind(binary.BigEndian.Uint16(frame))
	spec, ok := msg.Lookup(k)
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind %#04x", ErrViolation, uint16(k))
	}
	if nfds != spec.Fds {
		return nil, fmt.Errorf("%w: %s with %d fds, want %d", ErrViolation, spec.Name, nfds, spec.Fds)
	}
	m, err := msg.Decode(k, frame[headerLen:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrViolation, err)
	}
	if storeDir != "" {
		if err := msg.CheckStoreDir(m, storeDir); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrViolation, spec.Name, err)
		}
	}
	return m, nil
}

// parseRights returns every fd in the control messages. Any control message
// other than SCM_RIGHTS is a violation; the fds found so far are returned
// with the error so that the caller closes them.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %v", ErrViolation, err)
	}
	var fds []int
	var bad error
	for _, cm := range cmsgs {
		if cm.Header.Level != unix.SOL_SOCKET || cm.Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("%w: control message level %d type %d", ErrViolation, cm.Header.Level, cm.Header.Type)
			continue
		}
		r, err := unix.ParseUnixRights(&cm)
		if err != nil {
			bad = fmt.Errorf("%w: SCM_RIGHTS: %v", ErrViolation, err)
			continue
		}
		fds = append(fds, r...)
	}
	if bad == nil && len(fds) > MaxFds {
		bad = fmt.Errorf("%w: %d fds, at most %d", ErrViolation, len(fds), MaxFds)
	}
	return fds, bad
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Fd returns the descriptor the Conn sends and receives on (NewConn dups the
// one it was given), for a seccomp rule that lets sendmsg use only the
// monitor's channels. The Conn still owns it.
func (c *Conn) Fd() (int, error) {
	var fd int
	err := c.rc.Control(func(f uintptr) { fd = int(f) })
	return fd, err
}

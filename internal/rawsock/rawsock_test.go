package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func streamPair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	rc, err := NewConn(conns[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close(); conns[1].Close() })
	return rc, conns[1]
}

// A write larger than the socket buffer is written whole (the writer waits in
// the poller), and reads see every byte in order, then EOF.
func TestConnLargeWriteAndEOF(t *testing.T) {
	rc, peer := streamPair(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	done := make(chan error, 1)
	go func() {
		n, err := rc.Write(data)
		if err == nil && n != len(data) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
	if _, err := peer.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	all, err := io.ReadAll(rc)
	if err != nil || string(all) != "hi" {
		t.Fatalf("ReadAll = %q, %v; want \"hi\", nil", all, err)
	}
	if n, err := rc.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v", n, err)
	}
}

// A Read waiting for data ends at the deadline, and Close unblocks it.
func TestConnDeadlineAndClose(t *testing.T) {
	rc, _ := streamPair(t)
	rc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := rc.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v", err)
	}
	rc.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := rc.Read(make([]byte, 8)); done <- err }()
	time.Sleep(10 * time.Millisecond)
	rc.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
}

// Writing to a peer that has gone fails with EPIPE (no SIGPIPE kills us).
func TestConnWriteToClosedPeer(t *testing.T) {
	rc, peer := streamPair(t)
	peer.Close()
	var err error
	for range 100 {
		if _, err = rc.Write([]byte("x")); err != nil {
			break
		}
	}
	if !errors.Is(err, unix.EPIPE) {
		t.Fatalf("write to a closed peer: %v, want EPIPE", err)
	}
}

// Sendmsg and Recvmsg carry one datagram and its fds; an empty queue is
// EAGAIN, not a wait.
func TestSendmsgRecvmsg(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(4))
	if _, _, _, err := Recvmsg(fds[1], buf, oob, 0); err != unix.EAGAIN {
		t.Fatalf("Recvmsg on an empty socket: %v, want EAGAIN", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	n, err := Sendmsg(fds[0], []byte("frame"), unix.UnixRights(int(w.Fd())), 0)
	if err != nil || n != 5 {
		t.Fatalf("Sendmsg = %d, %v", n, err)
	}
	n, oobn, flags, err := Recvmsg(fds[1], buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil || string(buf[:n]) != "frame" || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		t.Fatalf("Recvmsg = %q, flags %#x, %v", buf[:n], flags, err)
	}
	cms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cms) != 1 {
		t.Fatalf("control messages: %v, %v", cms, err)
	}
	got, err := unix.ParseUnixRights(&cms[0])
	if err != nil || len(got) != 1 {
		t.Fatalf("rights: %v, %v", got, err)
	}
	passed := os.NewFile(uintptr(got[0]), "passed")
	defer passed.Close()
	if _, err := passed.Write([]byte("via fd")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	if _, err := io.ReadFull(r, b); err != nil || string(b) != "via fd" {
		t.Fatalf("pipe read %q, %v", b, err)
	}
	// A datagram longer than the buffer is cut and flagged.
	if _, err := Sendmsg(fds[0], bytes.Repeat([]byte("y"), 100), nil, 0); err != nil {
		t.Fatal(err)
	}
	n, _, flags, err = Recvmsg(fds[1], buf, oob, 0)
	if err != nil || n != len(buf) || flags&unix.MSG_TRUNC == 0 {
		t.Fatalf("long datagram: n %d flags %#x err %v", n, flags, err)
	}
}

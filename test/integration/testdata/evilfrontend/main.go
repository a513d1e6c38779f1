// Command evilfrontend stands in for privnix-frontend in the forged-peer
// tests: it behaves like a compromised frontend. After the monitor binds it to
// a client, it reads one line from that client naming an attack, sends the
// monitor the matching forged frame on fd 3, and reports to the client what
// the monitor answered. The monitor must kill it for every attack, and keep
// serving the next client.
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"

	"privnix/ipc/msg"
)

const (
	monFd = 3
	logFd = 4
)

// storeDir is the monitor's, from the Session it sent.
var storeDir string

func main() {
	// Hello: kind 0x0010, an empty array.
	send(frame(msg.KindHello, arr()), nil)
	buf := make([]byte, 256<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := unix.Recvmsg(monFd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		os.Exit(2)
	}
	var sess msg.Session
	if err := msgpack.Unmarshal(buf[2:n], &sess); err != nil {
		os.Exit(4)
	}
	storeDir = sess.HelloOK.StoreDir
	cmsgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	fds, _ := unix.ParseUnixRights(&cmsgs[0])
	client, err := net.FileConn(os.NewFile(uintptr(fds[0]), "client"))
	if err != nil {
		os.Exit(3)
	}
	line, _ := bufio.NewReader(client).ReadString('\n')
	attack := strings.TrimSpace(line)
	if attack == "log-flood" {
		// 5,000 records as fast as the channel takes them, then a request.
		rec := frame(msg.KindLog, arr(uint64(3), "flood", []any{}))
		for i := 0; i < 5000; i++ {
			unix.Sendmsg(logFd, rec, nil, nil, 0)
		}
		attack = "ok"
	}
	f, sendFd, ok := forge(attack)
	if !ok {
		fmt.Fprintf(client, "unknown attack %q\n", attack)
		return
	}
	var rights []int
	if sendFd {
		rights = []int{int(os.Stdout.Fd())}
	}
	if err := send(f, rights); err != nil {
		fmt.Fprintf(client, "send failed: %v\n", err)
		return
	}
	n, _, _, _, err = unix.Recvmsg(monFd, buf, oob, 0)
	switch {
	case err != nil:
		fmt.Fprintf(client, "monitor channel error: %v\n", err)
	case n == 0:
		fmt.Fprintf(client, "monitor closed the channel\n")
	default:
		fmt.Fprintf(client, "answer kind %#04x\n", binary.BigEndian.Uint16(buf[:2]))
	}
}

// forge returns the frame for an attack, and whether an fd rides with it.
func forge(attack string) ([]byte, bool, bool) {
	path := storeDir + "/00000000000000000000000000000000-x"
	switch attack {
	case "ok": // a well-formed request: the monitor answers it
		return frame(msg.KindIsValidPath, arr(path)), false, true
	case "unknown-kind":
		return frame(0x7ffe, arr()), false, true
	case "oversized":
		return frame(msg.KindIsValidPath, arr(strings.Repeat("a", 150<<10))), false, true
	case "huge-list": // QueryPaths{Op: 1, Paths: array32 header claiming 10⁶ elements}
		return append(binary.BigEndian.AppendUint16(nil, uint16(msg.KindQueryPaths)),
			0x94, 0x01, 0xdd, 0x00, 0x0f, 0x42, 0x40), false, true
	case "out-of-range":
		return frame(msg.KindQueryPaths, arr(uint64(1)<<40, []string{}, "", false)), false, true
	case "claims-uid-0": // an answer kind, carrying another identity
		return frame(msg.KindHelloOK, arr(0, true, "root", "", "/nix/store", "2.8.0", 7)), false, true
	case "second-hello":
		return frame(msg.KindHello, arr()), false, true
	case "unexpected-fd":
		return frame(msg.KindIsValidPath, arr(path)), true, true
	case "trailing-bytes":
		return append(frame(msg.KindIsValidPath, arr(path)), 0xc0), false, true
	case "arity":
		return frame(msg.KindIsValidPath, arr(path, path)), false, true
	}
	return nil, false, false
}

func arr(v ...any) []byte {
	if v == nil {
		v = []any{}
	}
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func frame(k msg.Kind, body []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(k)), body...)
}

func send(b []byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(monFd, b, oob, nil, 0)
}

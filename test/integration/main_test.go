package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"privnix/frontend/wire"
	"privnix/internal/nixclient"
)

// The test binary doubles as a client that holds one connection open: with
// PRIVNIX_TEST_HOLD=<socket> it connects, says "ready" and waits for stdin
// to close. Tests run it as a test user to have a live, bound frontend. Each
// line it reads is added to the store as a text file named "held", and it
// prints the path or the error, so a test can use the held connection; a line
// "import PATH TEXT" imports TEXT as the input-addressed PATH, unsigned.
func TestMain(m *testing.M) {
	if sock := os.Getenv("PRIVNIX_TEST_HOLD"); sock != "" {
		os.Exit(hold(sock))
	}
	if sock := os.Getenv("PRIVNIX_TEST_QUERY"); sock != "" {
		os.Exit(queryHolder(sock))
	}
	if sock := os.Getenv("PRIVNIX_TEST_BUILDDRV"); sock != "" {
		os.Exit(buildDrvClient(sock)) // build_inline_test.go
	}
	os.Exit(m.Run())
}

// dialHolder connects a holder to sock and says "ready" on stdout, or
// prints the error and returns nil.
func dialHolder(sock string) *nixclient.Client {
	c, err := nixclient.Dial(sock, wire.V(34))
	if err == nil {
		err = c.SetOptions()
	}
	if err != nil {
		fmt.Println("error:", err)
		return nil
	}
	fmt.Println("ready")
	return c
}

func hold(sock string) int {
	c := dialHolder(sock)
	if c == nil {
		return 1
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if f := strings.SplitN(in.Text(), " ", 3); len(f) == 3 && f[0] == "import" {
			nar := narOfFile(f[2])
			err := c.AddToStoreNar(wire.ValidPathInfo{Path: f[1], UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{
				NarHash: hexSHA256(nar), NarSize: uint64(len(nar))}}, false, false, bytes.NewReader(nar))
			fmt.Println(f[1], err)
			continue
		}
		p, err := c.AddTextToStore("held", in.Text(), nil)
		fmt.Println(p, err)
	}
	c.Close()
	return 0
}

// holdConnection starts the holder as userName; it returns when the
// connection is up. Closing the returned writer ends it.
func holdConnection(t *testing.T, userName, socket string) io.WriteCloser {
	t.Helper()
	in, _ := heldConnection(t, userName, socket)
	return in
}

// heldConnection is holdConnection that also returns the holder's output:
// write a line to in, read the answer (path and error) from out.
func heldConnection(t *testing.T, userName, socket string) (in io.WriteCloser, out *bufio.Reader) {
	t.Helper()
	cmd := selfAs(t, userName, "PRIVNIX_TEST_HOLD="+socket)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	out = bufio.NewReader(stdout)
	line, _ := out.ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("holder as %s: %q", userName, line)
	}
	return stdin, out
}

func userLookup(name string) (int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(u.Uid)
}

func lookupGID(t *testing.T, name string) int {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := strconv.Atoi(u.Gid)
	return g
}

// selfAs prepares the test binary to run again as userName, with only env in
// its environment: exec'd through an fd, so the test user need not reach go
// test's temporary directory.
func selfAs(t *testing.T, userName string, env ...string) *exec.Cmd {
	t.Helper()
	u, err := user.Lookup(userName)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { self.Close() })
	cmd := exec.Command("/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{self}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	return cmd
}

package integration

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"privnix/internal/testenv"
)

// SIGHUP rereads nix.conf: a connection open across it keeps working (with
// the settings it started with), new connections get the new allowed-users
// and trusted-users, and a broken nix.conf is refused with the running
// settings kept.
func TestReloadKeepsConnections(t *testing.T) {
	s := startReloadable(t, skeletonConf)
	held, answers := heldConnection(t, testenv.Alice, s.SocketPath)
	useHeld := func(text string) {
		t.Helper()
		fmt.Fprintln(held, text)
		line, _ := answers.ReadString('\n')
		if !strings.HasSuffix(line, " <nil>\n") || !strings.Contains(line, "-held") {
			t.Fatalf("the held connection, adding %q: %q", text, line)
		}
	}
	useHeld("before the reload")
	checkAccess(t, s, false, false)

	s.reload(t, skeletonConf+"allowed-users = @privnix-test-users privnix-carol\ntrusted-users = root @privnix-test-trusted privnix-alice\n",
		"configuration reloaded")
	useHeld("after the reload")
	checkAccess(t, s, true, true)

	// A configuration that does not validate (build uids overlapping the
	// frontends' in privnix.conf, which the Nix client does not read) is
	// refused as a whole: carol, whom the new nix.conf would refuse, may
	// still connect and alice is still trusted.
	s.SetPrivnixConf(t, "privnix-build-uids = 1879048192-1879048300\n")
	s.reload(t, "allowed-users = privnix-bob\n", "configuration not reloaded")
	useHeld("after the broken reload")
	checkAccess(t, s, true, true)
	if !strings.Contains(s.d.Log.String(), "privnix-build-uids") {
		t.Errorf("the log does not say which setting was wrong:\n%s", s.d.Log.String())
	}
}

// A connection keeps the settings it was accepted under: alice's connection
// opened while require-sigs was false may still import an unsigned path
// after a reload sets it to true; her new connection may not.
func TestReloadKeepsAConnectionsSettings(t *testing.T) {
	s := startReloadable(t, skeletonConf+"require-sigs = false\n")
	importOn := func(in io.Writer, out *bufio.Reader, p string) string {
		fmt.Fprintln(in, "import", p, "unsigned import of "+p)
		line, _ := out.ReadString('\n')
		return line
	}
	old, oldAnswers := heldConnection(t, testenv.Alice, s.SocketPath)
	p1 := s.StoreDir + "/00000000000000000000000000000001-unsigned"
	if got := importOn(old, oldAnswers, p1); got != p1+" <nil>\n" {
		t.Fatalf("unsigned import with require-sigs = false: %q", got)
	}
	s.reload(t, skeletonConf+"require-sigs = true\n", "configuration reloaded")
	p2 := s.StoreDir + "/00000000000000000000000000000002-unsigned"
	if got := importOn(old, oldAnswers, p2); got != p2+" <nil>\n" {
		t.Errorf("the connection opened before the reload: unsigned import %q, want it accepted", got)
	}
	fresh, freshAnswers := heldConnection(t, testenv.Alice, s.SocketPath)
	p3 := s.StoreDir + "/00000000000000000000000000000003-unsigned"
	if got := importOn(fresh, freshAnswers, p3); !strings.Contains(got, "lacks a valid signature") {
		t.Errorf("a connection opened after the reload: unsigned import %q, want it refused", got)
	}
}

// checkAccess checks whether carol may connect and whether alice is trusted
// (an untrusted user's substituter is ignored with a warning).
func checkAccess(t *testing.T, s *reloadable, carolAllowed, aliceTrusted bool) {
	t.Helper()
	r := s.Run(t, testenv.Carol, nil, "nix", "--extra-experimental-features", "nix-command", "store", "ping")
	if (r.Err == nil) != carolAllowed {
		t.Errorf("carol's nix store ping: err %v, want allowed=%v\n%s", r.Err, carolAllowed, r.Stderr)
	}
	r = s.Run(t, testenv.Alice, nil, "nix", "--extra-experimental-features", "nix-command",
		"--option", "substituters", "https://example.org", "store", "ping")
	if r.Err != nil {
		t.Fatalf("alice's nix store ping: %v\n%s", r.Err, r.Stderr)
	}
	if warned := strings.Contains(r.Stderr, "ignoring untrusted substituter"); warned == aliceTrusted {
		t.Errorf("alice's substituter warning = %v, want trusted=%v\n%s", warned, aliceTrusted, r.Stderr)
	}
}

// reloadable is a store served by a privnixd that the test sends SIGHUP.
type reloadable struct {
	*testenv.Store
	d *testenv.Daemon
}

func startReloadable(t *testing.T, nixConf string, args ...string) *reloadable {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, nixConf)
	return &reloadable{Store: s, d: testenv.StartPrivnixd(t, s, args...)}
}

// reload writes nix.conf, sends SIGHUP and waits until the daemon's log has
// one more line containing want (the daemon's answer to the signal).
func (s *reloadable) reload(t *testing.T, nixConf, want string) {
	t.Helper()
	before := strings.Count(s.d.Log.String(), want)
	if err := os.WriteFile(filepath.Join(s.ConfDir, "nix.conf"), []byte(nixConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(func() bool { return strings.Count(s.d.Log.String(), want) > before }) {
		t.Fatalf("after SIGHUP the daemon never logged %q:\n%s", want, s.d.Log.String())
	}
}

// SIGHUP rereads build-users-group: a build refused because the group does
// not exist succeeds once nix.conf names the tests' build users group.
func TestReloadRereadsBuildUsers(t *testing.T) {
	testenv.RequireRoot(t)
	lockBuildUsers(t)
	s := startReloadable(t, strings.Replace(buildConf, "privnix-test-bld", "privnix-test-nosuch", 1))
	expr := filepath.Join(s.Root, "trivial.nix")
	if err := os.WriteFile(expr, []byte(`derivation { name = "trivial"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo hi > $out" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", expr)
	if want := "the group 'privnix-test-nosuch' specified in 'build-users-group' does not exist"; r.Err == nil || !strings.Contains(r.Stderr, want) {
		t.Fatalf("build with a missing build users group: err %v, want %q\n%s", r.Err, want, r.Stderr)
	}
	s.reload(t, buildConf, "configuration reloaded")
	r = s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", expr)
	if r.Err != nil {
		t.Fatalf("build after the reload: %v\n%s", r.Err, r.Stderr)
	}
	if b, err := os.ReadFile(strings.TrimSpace(r.Stdout)); err != nil || string(b) != "hi\n" {
		t.Fatalf("the build's output: %q, %v", b, err)
	}
}

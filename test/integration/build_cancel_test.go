package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"privnix/internal/testenv"
)

// waitUntil polls cond until it holds or a minute passed (a bound for a
// loaded machine, not a timing check); it reports whether cond held.
func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// anyProcesses reports whether a process of one of uids runs.
func anyProcesses(uids []uint32) bool {
	for _, u := range uids {
		if len(uidProcesses(u)) > 0 {
			return true
		}
	}
	return false
}

// cancelScenario starts nix-build of a builder that sleeps, kills the
// client once the builder runs, and checks that no process of the build
// uids remains afterwards.
func cancelScenario(t *testing.T, s *testenv.Store, in string, uids []uint32) {
	t.Helper()
	c := s.Start(t, testenv.Alice, "nix-build", "--no-out-link", filepath.Join(in, "sleeper.nix"))
	if !waitUntil(func() bool { return anyProcesses(uids) }) {
		c.Cmd.Process.Kill()
		t.Fatalf("the builder never ran; client: %s", c.Wait().Stderr)
	}
	c.Cmd.Process.Kill()
	c.Wait()
	killed := time.Now()
	defer func() { t.Logf("the build's processes were gone %v after the client's end", time.Since(killed)) }()
	if !waitUntil(func() bool { return !anyProcesses(uids) }) {
		for _, u := range uids {
			if p := uidProcesses(u); len(p) > 0 {
				t.Errorf("processes of build uid %d survive the client: %v", u, p)
			}
		}
	}
}

// TestBuildCancel: a client killed while its builder sleeps: privnixd
// kills the build (no process of the build uid remains, as with
// nix-daemon) and frees the build user (the only one: the next build runs
// as it). A build another client waits for goes on when its first client
// leaves, and is built once.
func TestBuildCancel(t *testing.T) {
	const uid = 1879179264
	s, in := newBuildStore(t, strings.Replace(buildConf, "build-users-group = privnix-test-bld", "build-users-group =", 1))
	s.SetPrivnixConf(t, fmt.Sprintf("privnix-build-uids = %d-%d\n", uid, uid))
	flagDir, err := os.MkdirTemp("/var/tmp", "privnix-cancel-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(flagDir)
	os.Chmod(flagDir, 0o755)
	flag := filepath.Join(flagDir, "go")
	os.WriteFile(filepath.Join(in, "sleeper.nix"), []byte(`derivation { name = "sleeper"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo started; /bin/sleep 1000; echo > $out" ]; }`), 0o644)
	os.WriteFile(filepath.Join(in, "shared.nix"), []byte(`derivation { name = "shared"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "while [ ! -e `+flag+` ]; do /bin/sleep 0.1; done; echo done > $out" ]; }`), 0o644)
	os.WriteFile(filepath.Join(in, "after.nix"), []byte(`derivation { name = "after"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/usr/bin/id -u > $out" ]; }`), 0o644)
	os.Chmod(in, 0o755)

	d := testenv.StartPrivnixd(t, s)
	cancelScenario(t, s, in, []uint32{uid})
	if !strings.Contains(d.Log.String(), "build killed: its request was abandoned") {
		t.Errorf("privnixd did not log the killed build")
	}
	r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "after.nix"))
	if r.Err != nil {
		t.Fatalf("build after the cancelled one: %v\n%s", r.Err, r.Stderr)
	}
	if b, _ := os.ReadFile(strings.TrimSpace(r.Stdout)); strings.TrimSpace(string(b)) != fmt.Sprint(uid) {
		t.Errorf("the next build ran as %q, want the freed build user %d", b, uid)
	}

	// Two clients, one build: the first leaves, the second gets it.
	first := s.Start(t, testenv.Alice, "nix-build", "--no-out-link", filepath.Join(in, "shared.nix"))
	if !waitUntil(func() bool { return anyProcesses([]uint32{uid}) }) {
		t.Fatalf("the shared builder never ran: %s", first.Stderr.String())
	}
	second := s.Start(t, testenv.Bob, "nix-build", "--no-out-link", filepath.Join(in, "shared.nix"))
	if !waitUntil(func() bool { return strings.Contains(second.Stderr.String(), "waiting for lock on") }) {
		t.Fatalf("the second client does not wait for the first's build: %s", second.Stderr.String())
	}
	first.Cmd.Process.Kill()
	first.Wait()
	if !waitUntil(func() bool { return strings.Contains(d.Log.String(), "build goes on: its request was abandoned") }) {
		t.Errorf("privnixd did not keep the build another client waits for")
	}
	os.WriteFile(flag, nil, 0o644)
	r = second.Wait()
	if r.Err != nil {
		t.Fatalf("second client: %v\n%s", r.Err, r.Stderr)
	}
	if b, _ := os.ReadFile(strings.TrimSpace(r.Stdout)); string(b) != "done\n" {
		t.Errorf("shared output %q", b)
	}
	if n := strings.Count(d.Log.String(), "build killed"); n != 1 {
		t.Errorf("%d builds killed, want only the sleeper", n)
	}
	d.Stop(t)

	// nix-daemon with the build users group: its builds die with the client too.
	s.Reset(t)
	os.WriteFile(filepath.Join(s.ConfDir, "nix.conf"), []byte(buildConf), 0o644)
	var pool []uint32
	for i := 1; i <= 8; i++ {
		if u, err := userLookup(fmt.Sprintf("pnxbld%d", i)); err == nil {
			pool = append(pool, uint32(u))
		}
	}
	testenv.StartNixDaemon(t, s)
	cancelScenario(t, s, in, pool)
}

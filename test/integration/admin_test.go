package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"privnix/internal/admin"
	"privnix/internal/testenv"
)

// privnix status, as root, lists a connected alice client and alice's build
// in progress with its build user; alice is refused, by the socket's mode
// and, when the mode is opened up, by privnixd's own uid check.
func TestStatus(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	s := testenv.NewStore(t, buildConf)
	testenv.StartPrivnixd(t, s)
	privnix := filepath.Join(testenv.Bin(t), "privnix")
	holdConnection(t, testenv.Alice, s.SocketPath)

	// The builder waits for a file outside /tmp (a sandbox = false build
	// sees the host read-only, with a private /tmp).
	gate, err := os.MkdirTemp("/var/tmp", "privnix-status-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(gate)
	os.Chmod(gate, 0o755)
	release := filepath.Join(gate, "release")
	expr := filepath.Join(s.Root, "blocker.nix")
	os.WriteFile(expr, []byte(fmt.Sprintf(`derivation { name = "blocker"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "while [ ! -e %s ]; do /bin/sleep 0.05; done; echo done > $out" ]; }`, release)), 0o644)
	built := make(chan testenv.Result, 1)
	go func() { built <- s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", expr) }()
	defer func() { os.WriteFile(release, nil, 0o644); <-built }()

	var st admin.StatusReport
	if !waitUntil(func() bool {
		r := s.Run(t, "root", nil, privnix, "status", "--json")
		if r.Err != nil {
			t.Fatalf("privnix status --json as root: %v\n%s", r.Err, r.Stderr)
		}
		st = admin.StatusReport{}
		if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
			t.Fatalf("privnix status --json: %v\n%s", err, r.Stdout)
		}
		return len(st.Builds) > 0
	}) {
		t.Fatalf("no build in privnix status: %+v", st)
	}
	aliceUID, _ := userLookup(testenv.Alice)
	var held bool
	for _, c := range st.Connections {
		held = held || c.User == testenv.Alice && c.UID == uint32(aliceUID) && !c.Trusted && c.PID > 0 && c.FrontendPID > 0 && c.FrontendUID >= 1879048192
	}
	if !held {
		t.Errorf("no untrusted alice connection with its frontend among %+v", st.Connections)
	}
	b := st.Builds[0]
	if len(st.Builds) != 1 || !strings.HasSuffix(b.Drv, "-blocker.drv") || !strings.HasPrefix(b.BuildUser, "pnxbld") ||
		b.ClientUID != uint32(aliceUID) || b.BuildUID == 0 {
		t.Errorf("builds = %+v, want alice's blocker.drv as a pnxbld user", st.Builds)
	}
	if st.Version == "" || st.Started.IsZero() {
		t.Errorf("no version or start time: %+v", st)
	}

	// The table for people names the same things.
	r := s.Run(t, "root", nil, privnix, "status")
	for _, want := range []string{"CONNECTIONS", testenv.Alice, "BUILDS", b.Drv, b.BuildUser} {
		if r.Err != nil || !strings.Contains(r.Stdout, want) {
			t.Errorf("privnix status: %v, output lacks %q:\n%s%s", r.Err, want, r.Stdout, r.Stderr)
		}
	}

	// alice cannot open the socket; opened up, privnixd still refuses her.
	r = s.Run(t, testenv.Alice, nil, privnix, "status")
	if r.Err == nil || !strings.Contains(r.Stderr, "permission denied") {
		t.Errorf("privnix status as alice: err %v, stderr %q; want permission denied", r.Err, r.Stderr)
	}
	sock := filepath.Join(filepath.Dir(s.SocketPath), "privnix-admin")
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	r = s.Run(t, testenv.Alice, nil, privnix, "status", "--json")
	if r.Err == nil || strings.Contains(r.Stdout, "blocker") || !strings.Contains(r.Stderr, "for root") {
		t.Errorf("privnix status as alice through an open socket: err %v, stdout %q, stderr %q; want a refusal", r.Err, r.Stdout, r.Stderr)
	}

	os.WriteFile(release, nil, 0o644)
	if r := <-built; r.Err != nil {
		t.Errorf("the blocked build: %v\n%s", r.Err, r.Stderr)
	}
	built <- testenv.Result{}
}

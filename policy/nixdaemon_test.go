package policy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"privnix/internal/syncbuf"
	"privnix/internal/testenv"
	"privnix/internal/userdb"
	"privnix/nix/conf"
)

// nixDaemon runs Nix 2.8's nix-daemon as root on a private store with the
// given nix.conf and returns the store's directory and the daemon's log.
func nixDaemon(t *testing.T, confText string) (string, *syncbuf.Buffer) {
	t.Helper()
	dir, err := os.MkdirTemp("", "privnix-policy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"etc", "state", "store", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "nix.conf"), []byte(confText), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &syncbuf.Buffer{}
	cmd := exec.Command("nix-daemon")
	cmd.Env = append(nixEnv(dir), "NIX_DAEMON_SOCKET_PATH="+filepath.Join(dir, "sock"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nix-daemon: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(filepath.Join(dir, "sock")); err == nil {
			return dir, log
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nix-daemon did not create its socket: %s", log.String())
	return "", nil
}

func nixEnv(dir string) []string {
	return []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent",
		"NIX_STORE_DIR=" + filepath.Join(dir, "store"), "NIX_STATE_DIR=" + filepath.Join(dir, "state"),
		"NIX_LOG_DIR=" + filepath.Join(dir, "log"), "NIX_CONF_DIR=" + filepath.Join(dir, "etc")}
}

var (
	acceptedRe = regexp.MustCompile(`accepted connection from pid \d+, user (\S+)( \(trusted\))?`)
	refusedRe  = regexp.MustCompile(`(user '[^']*' is not allowed to connect to the Nix daemon)`)
)

// nixVerdict connects to the daemon as user and reads the daemon's verdict
// from its log: accepted (and whether trusted), or the refusal message.
func nixVerdict(t *testing.T, dir string, log *syncbuf.Buffer, user string) (allowed, trusted bool, refusal string) {
	t.Helper()
	before := len(log.String())
	cmd := exec.Command("runuser", "-u", user, "--", "env", "-i")
	cmd.Args = append(cmd.Args, append(nixEnv(dir), "NIX_REMOTE=unix://"+filepath.Join(dir, "sock"), "nix-store", "--verify")...)
	_ = cmd.Run() // the verdict is in the daemon's log
	for i := 0; i < 100; i++ {
		out := log.String()[before:]
		if m := acceptedRe.FindStringSubmatch(out); m != nil {
			return true, m[2] != "", ""
		}
		if m := refusedRe.FindStringSubmatch(out); m != nil {
			return false, false, m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no verdict for %s in the daemon's log: %s", user, log.String()[before:])
	return
}

// TestConnectAgainstNixDaemon checks Connect against Nix 2.8's own
// nix-daemon for the test users (scripts/setup-test-host.sh), on nix.conf
// files exercising names, @primary and @supplementary groups, and the
// build-users-group refusal.
func TestConnectAgainstNixDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nix-daemon as root; not in -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this differential test needs root (it runs nix-daemon and clients as the test users)")
	}
	// pnxbld1 is one of the users: hold the build users' lock so that no
	// build test's daemon kills this test's client running as it.
	testenv.LockBuildUsers(t)
	users := []string{"root", "privnix-alice", "privnix-bob", "privnix-carol", "pnxbld1"}
	confs := []string{
		"allowed-users = privnix-alice\nbuild-users-group = privnix-test-bld\n",
		"allowed-users = @privnix-test-users\nbuild-users-group = privnix-test-bld\n",
		"allowed-users = privnix-carol pnxbld1\ntrusted-users = root @privnix-test-trusted\nbuild-users-group = privnix-test-bld\n",
		"trusted-users = root pnxbld1 privnix-alice\nbuild-users-group = privnix-test-bld\n",
		"allowed-users = root\ntrusted-users = root\nbuild-users-group =\n",
	}
	db := userdb.New(userdb.Options{})
	for i, text := range confs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			dir, log := nixDaemon(t, text)
			s, _, err := conf.Load(filepath.Join(dir, "etc", "nix.conf"), os.ReadFile, conf.Host{Root: true, NumCPU: runtime.NumCPU()})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range users {
				wantAllowed, wantTrusted, refusal := nixVerdict(t, dir, log, u)
				allowed, trusted, d := Connect(peerOf(t, db, u), s, 0)
				if allowed != wantAllowed || trusted != wantTrusted {
					t.Errorf("%s with %q: we say allowed=%v trusted=%v (%s); nix-daemon says %v %v", u, text, allowed, trusted, d.Reason, wantAllowed, wantTrusted)
				}
				if refusal != "" && !strings.HasPrefix(d.Reason, refusal) {
					t.Errorf("%s: our refusal %q does not start with nix-daemon's %q", u, d.Reason, refusal)
				}
			}
		})
	}
}

func peerOf(t *testing.T, db *userdb.DB, name string) Peer {
	t.Helper()
	id, err := db.LookupUser(name)
	if err != nil {
		t.Fatal(err)
	}
	user, primary, groups, err := db.Peer(id.UID, id.GID)
	if err != nil {
		t.Fatal(fmt.Errorf("resolving %s: %w", name, err))
	}
	return Peer{UID: id.UID, GID: id.GID, User: user, PrimaryGroup: primary, Groups: groups}
}

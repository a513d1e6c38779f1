// Package testenv starts the real privnix binaries and the real Nix client on
// private stores, for integration tests. It is imported only by tests.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"privnix/internal/syncbuf"
)

// The test host's users and groups, created by scripts/setup-test-host.sh.
const (
	Alice       = "privnix-alice" // in privnix-test-users
	Bob         = "privnix-bob"   // in privnix-test-users and privnix-test-trusted
	Carol       = "privnix-carol" // in no group the tests allow
	UsersGroup  = "privnix-test-users"
	TrustGroup  = "privnix-test-trusted"
	BuildGroup  = "privnix-test-bld"
	setupScript = "scripts/setup-test-host.sh"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// RepoRoot is the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// Bin returns the directory with the privnix binaries: $PRIVNIX_BIN when
// set (make test), else a fresh build shared by the whole test binary.
func Bin(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("PRIVNIX_BIN"); d != "" {
		return d
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "privnix-bin-")
		if buildErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		// Same split as the Makefile: children without cgo (they need
		// AllThreadsSyscall), privnixd and privnix with it (NSS).
		cmd := exec.Command("make", "-s", "build", "BIN="+binDir)
		cmd.Dir = RepoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("make build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// RequireRoot fails the test unless it runs as root: the daemon's promises
// (uid changes, namespaces) can only be tested as root. CI runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root (make test does): it starts privnixd and runs clients as the test users")
	}
}

// RequireNix fails unless the real Nix client is installed.
func RequireNix(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		t.Fatalf("nix-store not found: run %s (it installs Debian's nix-bin)", setupScript)
	}
}

// Store is a private Nix store with its state, log and conf directories, in a
// directory every test user can traverse.
type Store struct {
	Root       string
	StoreDir   string
	StateDir   string
	LogDir     string
	ConfDir    string
	SocketPath string
}

// NewStore makes the directories and writes nix.conf (Nix syntax).
func NewStore(t testing.TB, nixConf string) *Store {
	t.Helper()
	root, err := os.MkdirTemp("", "privnix-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chmodWritable(root); os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	s := &Store{
		Root:     root,
		StoreDir: filepath.Join(root, "store"),
		StateDir: filepath.Join(root, "var", "nix"),
		LogDir:   filepath.Join(root, "var", "log", "nix"),
		ConfDir:  filepath.Join(root, "etc"),
	}
	s.SocketPath = filepath.Join(s.StateDir, "daemon-socket", "socket")
	for _, d := range []string{s.StoreDir, s.StateDir, s.LogDir, s.ConfDir, filepath.Dir(s.SocketPath)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.ConfDir, "nix.conf"), []byte(nixConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// SetPrivnixConf writes privnix.conf, privnix's own settings file.
func (s *Store) SetPrivnixConf(t testing.TB, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.ConfDir, "privnix.conf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Reset empties the store, state and log directories (keeping their paths),
// so a second daemon can run the same scenario on the same store directory:
// store paths depend on it.
func (s *Store) Reset(t testing.TB) {
	t.Helper()
	for _, d := range []string{s.StoreDir, filepath.Join(s.Root, "var"), filepath.Join(s.Root, "home")} {
		chmodWritable(d)
		if err := os.RemoveAll(d); err != nil {
			t.Fatalf("resetting %s: %v", d, err)
		}
	}
	for _, d := range []string{s.StoreDir, s.StateDir, s.LogDir, filepath.Dir(s.SocketPath)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// chmodWritable makes read-only store trees removable.
func chmodWritable(dir string) {
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

// Env is the environment that points a Nix client or daemon at this store.
func (s *Store) Env() []string {
	return []string{
		"NIX_STORE_DIR=" + s.StoreDir,
		"NIX_STATE_DIR=" + s.StateDir,
		"NIX_LOG_DIR=" + s.LogDir,
		"NIX_CONF_DIR=" + s.ConfDir,
		"NIX_DAEMON_SOCKET_PATH=" + s.SocketPath,
	}
}

// Daemon is a running privnixd (or nix-daemon) on a Store.
type Daemon struct {
	Cmd    *exec.Cmd
	Log    *syncbuf.Buffer
	cancel context.CancelFunc
	exited chan struct{}
}

// StartPrivnixd starts privnixd as root on s and waits for its socket.
func StartPrivnixd(t testing.TB, s *Store, extraArgs ...string) *Daemon {
	t.Helper()
	bin := Bin(t)
	args := append([]string{"--bin-dir", bin}, extraArgs...)
	return start(t, s, filepath.Join(bin, "privnixd"), args)
}

// StartPrivnixdUnder is StartPrivnixd run through a wrapper command (e.g.
// setpriv with a capability bounding set), which execs privnixd with args.
func StartPrivnixdUnder(t testing.TB, s *Store, wrapper []string, extraArgs ...string) *Daemon {
	t.Helper()
	bin := Bin(t)
	args := append(append(wrapper[1:len(wrapper):len(wrapper)], filepath.Join(bin, "privnixd"), "--bin-dir", bin), extraArgs...)
	return start(t, s, wrapper[0], args)
}

// StartNixDaemon starts the real nix-daemon 2.8 on s, for side-by-side tests.
func StartNixDaemon(t testing.TB, s *Store) *Daemon {
	t.Helper()
	return start(t, s, "nix-daemon", nil)
}

func start(t testing.TB, s *Store, path string, args []string) *Daemon {
	os.Remove(s.SocketPath)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, s.Env()...)
	log := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", path, err)
	}
	d := &Daemon{Cmd: cmd, Log: log, cancel: cancel, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.Stop(t) })
	deadline := time.After(20 * time.Second)
	for {
		if _, err := os.Stat(s.SocketPath); err == nil {
			return d
		}
		select {
		case <-deadline:
		case <-d.exited:
		case <-time.After(20 * time.Millisecond):
			continue
		}
		d.Stop(t)
		t.Fatalf("%s did not create %s; its log:\n%s", path, s.SocketPath, log.String())
	}
}

// Exited is closed when the daemon process has ended.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Stop sends SIGTERM and waits; it is safe to call twice.
func (d *Daemon) Stop(t testing.TB) {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	<-d.exited
	if t.Failed() {
		t.Logf("daemon log:\n%s", d.Log.String())
	}
}

// Result is what a client command did.
type Result struct {
	Stdout, Stderr string
	Err            error
}

// Run runs a Nix client command as the named user against s's daemon
// (NIX_REMOTE=daemon), with a private HOME.
func (s *Store) Run(t testing.TB, userName string, stdin []byte, name string, args ...string) Result {
	t.Helper()
	return s.RunEnv(t, userName, nil, stdin, name, args...)
}

// RunEnv is Run with extra environment variables.
func (s *Store) RunEnv(t testing.TB, userName string, env []string, stdin []byte, name string, args ...string) Result {
	t.Helper()
	cred, home := credential(t, userName, s.Root)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "NIX_REMOTE=daemon", "USER=" + userName}, s.Env()...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// Client is a Nix client command started with Start and still running:
// its output can be read while it runs.
type Client struct {
	Cmd            *exec.Cmd
	Stdout, Stderr *syncbuf.Buffer
	done           chan struct{}
	err            error
}

// Start starts a Nix client command as Run does, without waiting for it;
// it is killed at the end of the test if still running.
func (s *Store) Start(t testing.TB, userName string, name string, args ...string) *Client {
	t.Helper()
	cred, home := credential(t, userName, s.Root)
	cmd := exec.Command(name, args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "NIX_REMOTE=daemon", "USER=" + userName}, s.Env()...)
	cmd.Dir = home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	c := &Client{Cmd: cmd, Stdout: &syncbuf.Buffer{}, Stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-c.done })
	return c
}

// Wait waits for the command's end.
func (c *Client) Wait() Result {
	<-c.done
	return Result{Stdout: c.Stdout.String(), Stderr: c.Stderr.String(), Err: c.err}
}

// credential returns the user's uid, primary gid and groups, and a HOME for it
// beneath root.
func credential(t testing.TB, name, root string) (*syscall.Credential, string) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("test user %s: %v (run %s)", name, err, setupScript)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	gids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	var groups []uint32
	for _, g := range gids {
		n, _ := strconv.ParseUint(g, 10, 32)
		groups = append(groups, uint32(n))
	}
	home := filepath.Join(root, "home", name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "home"), 0o755)
	if err := os.Chown(home, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, home
}

// BuildUsersLock is the host-wide lock every test takes while anything runs
// as the shared pnxbld build users: privnixd and nix-daemon kill every
// process of a build user around each build, so no other test's builder or
// client may run as one meanwhile.
const BuildUsersLock = "/tmp/privnix-test-build-users.lock"

// LockBuildUsers takes BuildUsersLock for the rest of the test.
func LockBuildUsers(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(BuildUsersLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("locking %s: %v", BuildUsersLock, err)
	}
	t.Cleanup(func() { f.Close() })
}

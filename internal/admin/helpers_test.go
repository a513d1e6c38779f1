package admin

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireRoot fails unless the test runs as root: setup and doctor create
// real users and groups and own real directories.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root (make test does): it creates users and groups")
	}
}

// uniqueName is a fresh user or group name: prefix + 5 random letters.
func uniqueName(prefix string) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return prefix + string(b)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// newGroup creates a system group and removes it after the test.
func newGroup(t *testing.T, name string) {
	t.Helper()
	run(t, "groupadd", "--system", name)
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
}

// removeAfter removes the users and groups a test's setup creates.
func removeAfter(t *testing.T, users []string, groups ...string) {
	t.Cleanup(func() {
		for _, u := range users {
			exec.Command("userdel", u).Run()
		}
		for _, g := range groups {
			exec.Command("groupdel", g).Run()
		}
	})
}

// newUser creates a system user with a primary group and extra groups, and
// removes it after the test.
func newUser(t *testing.T, name, primary, shell string, groups ...string) {
	t.Helper()
	args := []string{"--system", "--no-create-home", "--home-dir", "/var/empty", "--shell", shell, "--gid", primary}
	if len(groups) > 0 {
		args = append(args, "--groups", strings.Join(groups, ","))
	}
	run(t, "useradd", append(args, name)...)
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
}

// testStore is a private store under a temp directory every user can
// traverse, with nix.conf (and privnix.conf when not empty).
type testStore struct {
	Root  string
	Paths Paths
	env   map[string]string
}

func newTestStore(t *testing.T, nixConf, privnixConf string) *testStore {
	t.Helper()
	root := t.TempDir()
	for d := root; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	s := &testStore{Root: root, env: map[string]string{
		"NIX_STORE_DIR": filepath.Join(root, "store"),
		"NIX_STATE_DIR": filepath.Join(root, "var", "nix"),
		"NIX_LOG_DIR":   filepath.Join(root, "var", "log", "nix"),
		"NIX_CONF_DIR":  filepath.Join(root, "etc"),
	}}
	if err := os.MkdirAll(s.env["NIX_CONF_DIR"], 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(s.env["NIX_CONF_DIR"], name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("nix.conf", nixConf)
	if privnixConf != "" {
		write("privnix.conf", privnixConf)
	}
	p, err := PathsFromEnv(s.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	s.Paths = p
	return s
}

func (s *testStore) Getenv(name string) string { return s.env[name] }

// Env is the store's environment as NAME=VALUE lines.
func (s *testStore) Env() []string {
	var out []string
	for k, v := range s.env {
		out = append(out, k+"="+v)
	}
	return out
}

// setup runs the set-up on s and fails the test on problems.
func (s *testStore) setup(t *testing.T, o SetupOptions) *Plan {
	t.Helper()
	set, _, _, err := LoadSettings(s.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := PlanSetup(set, s.Paths, o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := pl.Apply(&out); err != nil {
		t.Fatalf("setup: %v\n%s", err, out.String())
	}
	if len(pl.Problems) > 0 {
		t.Fatalf("setup left problems:\n%s", out.String())
	}
	return pl
}

func buildUserNames(group string, n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("%s%d", group, i))
	}
	return out
}

func itoa(n uint32) string { return fmt.Sprint(n) }

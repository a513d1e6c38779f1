package frontend

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// nixHarness serves a unix socket in a temporary directory with Serve and a memStore,
// and runs the real Nix client against it.
type nixHarness struct {
	t    *testing.T
	dir  string
	sock string
	mem  *memStore
	env  []string
}

func newNixHarness(t *testing.T, sess Session) *nixHarness {
	t.Helper()
	for _, tool := range []string{"nix", "nix-store", "nix-hash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the end-to-end test needs the Nix client (Debian nix-bin): %v", err)
		}
	}
	dir := t.TempDir()
	h := &nixHarness{t: t, dir: dir, sock: filepath.Join(dir, "socket")}
	store := filepath.Join(dir, "store")
	for _, d := range []string{"store", "state", "log", "etc", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "nix.conf"), []byte("experimental-features = nix-command\nsubstituters =\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(dir, "home"),
		"NIX_STORE_DIR=" + store, "NIX_STATE_DIR=" + filepath.Join(dir, "state"),
		"NIX_LOG_DIR=" + filepath.Join(dir, "log"), "NIX_CONF_DIR=" + filepath.Join(dir, "etc"),
		"XDG_CACHE_HOME=" + filepath.Join(dir, "home", "cache"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "home", "config"),
	}
	sess.StoreDir = store
	h.mem = newMemStore(store)
	ln, err := net.Listen("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = Serve(ctx, c, sess, h.mem); c.Close() }()
		}
	}()
	return h
}

// run runs a Nix command against the harness's socket and returns its combined output.
func (h *nixHarness) run(args ...string) (string, error) {
	h.t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = h.env
	cmd.Dir = h.dir
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (h *nixHarness) store() string { return "unix://" + h.sock }

func TestRealNixClient(t *testing.T) {
	h := newNixHarness(t, Session{User: "tester", NixVersion: "2.8.0-privnix-test"})
	file := filepath.Join(h.dir, "hello.txt")
	if err := os.WriteFile(file, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := h.run("nix", "store", "ping", "--store", h.store())
	if err != nil || !strings.Contains(out, "2.8.0-privnix-test") {
		t.Fatalf("nix store ping: %v\n%s", err, out)
	}

	added, err := h.run("nix-store", "--store", h.store(), "--add", file)
	if err != nil {
		t.Fatalf("nix-store --add: %v\n%s", err, added)
	}
	narHash, err := h.run("nix-hash", "--type", "sha256", file)
	if err != nil {
		t.Fatal(err)
	}
	want, err := h.run("nix-store", "--print-fixed-path", "--recursive", "sha256", narHash, "hello.txt")
	if err != nil || added != want {
		t.Fatalf("nix-store --add printed %q, Nix computes %q (%v)", added, want, err)
	}

	out, err = h.run("nix-store", "--store", h.store(), "-q", "--hash", added)
	if err != nil {
		t.Fatalf("nix-store -q --hash: %v\n%s", err, out)
	}
	base32, err := h.run("nix-hash", "--type", "sha256", "--base32", file)
	if err != nil || out != "sha256:"+base32 {
		t.Fatalf("nix-store -q --hash printed %q, want sha256:%s (%v)", out, base32, err)
	}

	out, err = h.run("nix-store", "--store", h.store(), "-q", "--size", added)
	if err != nil || out != "120" {
		t.Fatalf("nix-store -q --size: %q %v", out, err)
	}

	// --add-fixed sends IsValidPath then AddToStoreNar with a content address.
	fixed, err := h.run("nix-store", "--store", h.store(), "--add-fixed", "sha1", file)
	if err != nil {
		t.Fatalf("nix-store --add-fixed: %v\n%s", err, fixed)
	}
	flat, err := h.run("nix-hash", "--type", "sha1", "--flat", file)
	if err != nil {
		t.Fatal(err)
	}
	want, err = h.run("nix-store", "--print-fixed-path", "sha1", flat, "hello.txt")
	if err != nil || fixed != want {
		t.Fatalf("nix-store --add-fixed printed %q, Nix computes %q (%v)", fixed, want, err)
	}
	if info, ok := h.mem.info(fixed); !ok || !strings.HasPrefix(info.CA, "fixed:sha1:") {
		t.Fatalf("the store has %+v for %s", info, fixed)
	}

	out, err = h.run("nix", "path-info", "--store", h.store(), "--json", added)
	if err != nil || !strings.Contains(out, `"narSize":120`) || !strings.Contains(out, `"ca":"fixed:r:sha256:`) {
		t.Fatalf("nix path-info --json: %v\n%s", err, out)
	}

	out, err = h.run("nix-store", "--store", h.store(), "--gc", "--print-dead")
	if err != nil || !strings.Contains(out, added) {
		t.Fatalf("nix-store --gc --print-dead: %v\n%s", err, out)
	}
	out, err = h.run("nix-store", "--store", h.store(), "--delete", added)
	if err != nil || !strings.Contains(out, "1 store paths deleted") {
		t.Fatalf("nix-store --delete: %v\n%s", err, out)
	}
	if _, ok := h.mem.info(added); ok {
		t.Fatalf("nix-store --delete left %s", added)
	}
}

func TestRealNixClientRefused(t *testing.T) {
	refusal := "user 'tester' is not allowed to connect to the Nix daemon (not in 'allowed-users')"
	h := newNixHarness(t, Session{User: "tester", Refusal: refusal})
	out, err := h.run("nix", "store", "ping", "--store", h.store())
	if err == nil || !strings.Contains(out, refusal) {
		t.Fatalf("nix store ping by a refused user: %v\n%s", err, out)
	}
}

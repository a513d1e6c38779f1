package integration

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"privnix/internal/testenv"
)

// Substitution from binary caches made by `nix copy --to file://…` and served
// over loopback HTTP by a Go file server.

const substConf = `
allowed-users = *
trusted-users = root @privnix-test-trusted
build-users-group = privnix-test-bld
substituters =
require-sigs = true
sandbox = false
max-jobs = 2
`

// The derivation builds only while the marker file exists: the cache is
// made with it, the substitution tests run without it (a build would fail).
const substExpr = `{ marker, tag ? "a" }: let
  dep = derivation { name = "subst-dep-${tag}"; system = "x86_64-linux"; builder = "/bin/sh";
    args = [ "-c" "test -e ${marker} || exit 7; /bin/mkdir $out; echo dep > $out/file" ]; };
in derivation { name = "subst-top-${tag}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "test -e ${marker} || exit 7; echo ${dep} > $out" ]; }
`

// substEnv is a store, the expression, a marker and a signing key.
type substEnv struct {
	s              *testenv.Store
	expr, marker   string
	secret, public string // key files
	pubKey         string // "name:base64"
}

func newSubstEnv(t *testing.T, extraConf string) *substEnv {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	e := &substEnv{}
	keys := t.TempDir()
	os.Chmod(keys, 0o755)
	e.secret, e.public = filepath.Join(keys, "sk"), filepath.Join(keys, "pk")
	rootRun(t, nil, "nix-store", "--generate-binary-cache-key", "privnix-test-cache-1", e.secret, e.public)
	pk, err := os.ReadFile(e.public)
	if err != nil {
		t.Fatal(err)
	}
	e.pubKey = strings.TrimSpace(string(pk))
	e.s = testenv.NewStore(t, substConf+"trusted-public-keys = "+e.pubKey+"\n"+extraConf)
	in := filepath.Join(e.s.Root, "in")
	os.MkdirAll(in, 0o755)
	e.expr = filepath.Join(in, "subst.nix")
	// Builds get a private /tmp (as in nix-daemon's sandbox): the marker lives elsewhere.
	mdir, err := os.MkdirTemp("/var/tmp", "privnix-subst-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(mdir, 0o755)
	t.Cleanup(func() { os.RemoveAll(mdir) })
	e.marker = filepath.Join(mdir, "marker")
	if err := os.WriteFile(e.expr, []byte(substExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// rootRun runs a Nix command as root (the test process) with env.
func rootRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root"}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// makeCache builds the expression (tag) with the marker on privnixd and
// copies its closure to a file:// cache with the given URL parameters
// ("secret-key=…", "compression=…"); the store is then emptied. It returns
// the cache directory and the top output path.
func (e *substEnv) makeCache(t *testing.T, tag, params string) (string, string) {
	t.Helper()
	e.s.Reset(t)
	if err := os.WriteFile(e.marker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(e.marker)
	d := testenv.StartPrivnixd(t, e.s)
	r := e.s.Run(t, testenv.Bob, nil, "nix-build", "--no-out-link", e.expr, "--argstr", "marker", e.marker, "--argstr", "tag", tag)
	if r.Err != nil {
		t.Fatalf("building the cache's paths: %v\n%s", r.Err, r.Stderr)
	}
	out := strings.TrimSpace(r.Stdout)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	url := "file://" + dir
	if params != "" {
		url += "?" + params
	}
	rootRun(t, append(e.s.Env(), "NIX_REMOTE=daemon"), "nix", "--extra-experimental-features", "nix-command", "copy", "--to", url, out)
	d.Stop(t)
	e.s.Reset(t)
	return dir, out
}

// serve serves dir over loopback HTTP until the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// build runs nix-build of the expression (marker absent) as user.
func (e *substEnv) build(t *testing.T, user, tag string, args ...string) testenv.Result {
	t.Helper()
	args = append([]string{"--no-out-link", e.expr, "--argstr", "marker", e.marker, "--argstr", "tag", tag}, args...)
	return e.s.Run(t, user, nil, "nix-build", args...)
}

// A trusted user names a signed cache: the path and its dependency come
// from it (the builder would fail), with the narinfo's hash and references.
func TestSubstituteTrustedUser(t *testing.T) {
	e := newSubstEnv(t, "")
	dir, out := e.makeCache(t, "a", "secret-key="+e.secret)
	url := serve(t, http.FileServer(http.Dir(dir)))
	d := testenv.StartPrivnixd(t, e.s)
	defer d.Stop(t)
	r := e.build(t, testenv.Bob, "a", "--option", "substituters", url)
	if r.Err != nil {
		t.Fatalf("nix-build from the cache: %v\n%s\n%s", r.Err, r.Stderr, d.Log.String())
	}
	if got := strings.TrimSpace(r.Stdout); got != out {
		t.Fatalf("got %q, want %q", got, out)
	}
	dep, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dep)), "file")); err != nil || string(b) != "dep\n" {
		t.Fatalf("dependency contents %q, %v", b, err)
	}
	refs := e.s.Run(t, testenv.Alice, nil, "nix-store", "-q", "--references", out)
	if strings.TrimSpace(refs.Stdout) != strings.TrimSpace(string(dep)) {
		t.Errorf("references of %s: %q, want %q", out, refs.Stdout, dep)
	}
	if v := e.s.Run(t, testenv.Alice, nil, "nix-store", "--verify-path", out); v.Err != nil {
		t.Errorf("verify-path: %v\n%s", v.Err, v.Stderr)
	}
}

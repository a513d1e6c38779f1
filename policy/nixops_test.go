package policy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"privnix/nix/conf"
)

// asUser runs a Nix command as user against the daemon in dir and returns its
// stdout, stderr and whether it succeeded.
func asUser(t *testing.T, dir, user string, args ...string) (string, string, bool) {
	t.Helper()
	cmd := exec.Command("runuser", "-u", user, "--", "env", "-i")
	cmd.Args = append(cmd.Args, append(nixEnv(dir), "NIX_REMOTE=unix://"+filepath.Join(dir, "sock"))...)
	cmd.Args = append(cmd.Args, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return strings.TrimSpace(out.String()), errb.String(), err == nil
}

// TestOpsAgainstNixDaemon checks CheckOp's decisions and texts, and the
// substituter filtering of FilterOverrides, against what nix-daemon 2.8 tells
// an untrusted (alice) and a trusted (bob, via @privnix-test-trusted) client.
func TestOpsAgainstNixDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nix-daemon as root; not in -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this differential test needs root (it runs nix-daemon and clients as the test users)")
	}
	text := "build-users-group = privnix-test-bld\ntrusted-users = root @privnix-test-trusted\n" +
		"substituters = http://a\ntrusted-substituters = http://t/\n"
	dir, _ := nixDaemon(t, text)
	s, _, err := conf.Load(filepath.Join(dir, "etc", "nix.conf"), os.ReadFile, conf.Host{Root: true, NumCPU: runtime.NumCPU()})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nix-store", "--generate-binary-cache-key", "k", filepath.Join(dir, "sk"), filepath.Join(dir, "pk")).CombinedOutput(); err != nil {
		t.Fatalf("generating a key: %s %v", out, err)
	}
	if err := os.Chmod(filepath.Join(dir, "sk"), 0o644); err != nil { // the test users sign with it
		t.Fatal(err)
	}
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path, stderr, ok := asUser(t, dir, "privnix-alice", "nix-store", "--add", file)
	if !ok {
		t.Fatalf("untrusted nix-store --add failed: %s", stderr)
	}
	ops := []struct {
		op   string
		req  Request
		args []string
	}{
		{"AddSignatures", Request{}, []string{"nix", "--extra-experimental-features", "nix-command", "store", "sign", "-k", filepath.Join(dir, "sk"), path}},
		{"VerifyStore", Request{Repair: true}, []string{"nix-store", "--verify", "--repair"}},
		{"VerifyStore", Request{}, []string{"nix-store", "--verify"}},
		{"BuildPaths", Request{Repair: true}, []string{"nix-store", "-r", "--repair", path}},
		{"BuildPaths", Request{}, []string{"nix-store", "-r", path}},
	}
	for _, user := range []struct {
		name    string
		trusted bool
	}{{"privnix-alice", false}, {"privnix-bob", true}} {
		for _, o := range ops {
			o.req.Trusted = user.trusted
			d := CheckOp(o.op, o.req)
			_, stderr, ok := asUser(t, dir, user.name, o.args...)
			switch {
			case !d.Allow && !strings.Contains(stderr, "error: "+d.Reason):
				t.Errorf("%s %v: we refuse with %q; nix-daemon said %q", user.name, o.args, d.Reason, stderr)
			case d.Allow && (strings.Contains(stderr, "not privileged") || strings.Contains(stderr, "not allowed")):
				t.Errorf("%s %v: we allow; nix-daemon said %q", user.name, o.args, stderr)
			case d.Allow && !ok && o.op != "BuildPaths": // a trusted repair of a path nobody can rebuild may fail otherwise
				t.Errorf("%s %v: we allow; nix failed: %q", user.name, o.args, stderr)
			}
		}
	}

	subs := []string{"http://a https://example.org http://t http://a/", "http://evil", ""}
	for _, v := range subs {
		_, stderr, _ := asUser(t, dir, "privnix-alice", "nix-store", "-r", path, "--option", "substituters", v)
		_, warns := FilterOverrides(false, []Override{{"substituters", v}}, s)
		var nixWarns []string
		for _, l := range strings.Split(stderr, "\n") {
			if w, ok := strings.CutPrefix(l, "warning: "); ok && strings.Contains(w, "substituter") {
				nixWarns = append(nixWarns, w)
			}
		}
		if strings.Join(warns, "\n") != strings.Join(nixWarns, "\n") {
			t.Errorf("substituters %q: we warn %q; nix-daemon warned %q", v, warns, nixWarns)
		}
	}
}

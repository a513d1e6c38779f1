package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"privnix/internal/testenv"
)

// signedExpr is a trivial derivation; n makes a new one for each phase.
const signedExpr = `{ n }: derivation { name = "signed-${n}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo ${n} > $out" ]; }`

// TestSignBuilds: with secret-key-files, a locally built output carries the
// key's signature, the same line nix-daemon 2.8 writes, and `nix store
// verify` accepts it; so does one imported unsigned and then confirmed by
// --check. After a reload naming a key file others may read (and
// one that does not exist), and after one without the setting, new outputs
// are unsigned; the refusal is logged without the key. The public half of
// the key is trusted for imports, as by nix-daemon.
func TestSignBuilds(t *testing.T) {
	s, in := newBuildStore(t, buildConf)
	if err := os.WriteFile(filepath.Join(in, "signed.nix"), []byte(signedExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(s.Root, "keys")
	os.MkdirAll(keys, 0o755)
	secret, public := filepath.Join(keys, "good.sec"), filepath.Join(keys, "good.pub")
	if out, err := exec.Command("nix-store", "--generate-binary-cache-key", "privnix-test-1", secret, public).CombinedOutput(); err != nil {
		t.Fatalf("generating a key: %v\n%s", err, out)
	}
	os.Chmod(secret, 0o600)
	pub, err := os.ReadFile(public)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := os.ReadFile(secret)
	if err != nil {
		t.Fatal(err)
	}
	setConf := func(extra string) {
		if err := os.WriteFile(filepath.Join(s.ConfDir, "nix.conf"), []byte(buildConf+extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nix := func(args ...string) testenv.Result {
		return s.Run(t, testenv.Alice, nil, "nix", append([]string{"--extra-experimental-features", "nix-command"}, args...)...)
	}
	// phase builds signed-n as alice and reports the path, its signatures
	// and whether one signature by the key verifies.
	phase := func(n string) map[string]string {
		out := map[string]string{}
		r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "signed.nix"), "--argstr", "n", n)
		if r.Err != nil {
			t.Fatalf("build %s: %v\n%s", n, r.Err, r.Stderr)
		}
		p := strings.TrimSpace(r.Stdout)
		out["path"] = p
		r = nix("path-info", "--sigs", p)
		out["sigs"] = strings.TrimSpace(r.Stdout) + lastError(r.Stderr)
		r = nix("store", "verify", "--trusted-public-keys", string(pub), "--sigs-needed", "1", p)
		out["verify"] = "ok"
		if r.Err != nil {
			out["verify"] = "error: " + lastError(r.Stderr)
		}
		return out
	}

	setConf("secret-key-files = " + secret + "\n")
	_, d := againstNixDaemon(t, s, in, func(t *testing.T, s *testenv.Store, in string) map[string]string {
		out := phase("1")
		// Imported again without signatures, then confirmed by --check:
		// ultimate again, and signed.
		p := out["path"]
		exp := s.Run(t, testenv.Bob, nil, "nix-store", "--export", p)
		s.Run(t, testenv.Bob, nil, "nix-store", "--delete", p)
		s.Run(t, testenv.Bob, []byte(exp.Stdout), "nix-store", "--import")
		r := nix("path-info", "--sigs", p)
		out["sigs imported"] = strings.TrimSpace(r.Stdout) + lastError(r.Stderr)
		r = s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", "--check", filepath.Join(in, "signed.nix"), "--argstr", "n", "1")
		out["check"] = strings.TrimSpace(r.Stdout) + lastError(r.Stderr)
		r = nix("path-info", "--sigs", p)
		out["sigs checked"] = strings.TrimSpace(r.Stdout) + lastError(r.Stderr)
		// The public half of a secret-key-files key is trusted, as Nix
		// does: alice (untrusted, require-sigs) copies the path back in
		// from a cache with only that key's signature.
		cache := filepath.Join(s.Root, "home", "sign-cache")
		os.MkdirAll(cache, 0o755)
		os.Chown(cache, lookupUID(t, testenv.Alice), -1)
		r = nix("copy", "--to", "file://"+cache, p)
		out["copy to cache"] = lastError(r.Stderr)
		s.Run(t, testenv.Bob, nil, "nix-store", "--delete", p)
		r = nix("copy", "--from", "file://"+cache, p)
		out["copy from cache"] = "ok"
		if r.Err != nil {
			out["copy from cache"] = "error: " + lastError(r.Stderr)
		}
		return out
	}, func(want map[string]string) {
		if want["copy from cache"] != "ok" {
			t.Fatalf("nix-daemon refused a path signed by its own secret-key-files key: %q (copy to cache: %q)", want["copy from cache"], want["copy to cache"])
		}
		if !strings.Contains(want["sigs"], " privnix-test-1:") || want["verify"] != "ok" {
			t.Fatalf("nix-daemon did not sign: %q, verify %q", want["sigs"], want["verify"])
		}
		if strings.Contains(want["sigs imported"], "privnix-test-1:") || want["sigs checked"] != want["sigs"] {
			t.Fatalf("nix-daemon: imported %q, after --check %q", want["sigs imported"], want["sigs checked"])
		}
	})
	defer d.Stop(t)

	reload := func(extra string) {
		setConf(extra)
		before := strings.Count(d.Log.String(), "configuration reloaded")
		if err := d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if !waitUntil(func() bool { return strings.Count(d.Log.String(), "configuration reloaded") > before }) {
			t.Fatalf("no reload:\n%s", d.Log.String())
		}
	}
	unsigned := func(n string) {
		t.Helper()
		got := phase(n)
		if strings.Contains(got["sigs"], "privnix-test-1:") || got["verify"] == "ok" {
			t.Errorf("signed-%s is signed: %q, verify %q", n, got["sigs"], got["verify"])
		}
	}

	// A key file its group or others may read is refused, a missing one skipped.
	loose := filepath.Join(keys, "loose.sec")
	if err := os.WriteFile(loose, sec, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o644)
	missing := filepath.Join(keys, "missing.sec")
	reload("secret-key-files = " + loose + " " + missing + "\n")
	unsigned("2")
	log := d.Log.String()
	for _, w := range []string{loose, missing} {
		if !strings.Contains(log, "not signing with this key file") || !strings.Contains(log, w) {
			t.Errorf("no refusal of %s logged:\n%s", w, log)
		}
	}
	if !strings.Contains(log, "mode 0644") {
		t.Errorf("the refusal does not say why:\n%s", log)
	}
	if k := strings.TrimSpace(string(sec)); strings.Contains(log, k[strings.IndexByte(k, ':')+1:]) {
		t.Errorf("the log holds the secret key")
	}

	// Without the setting: no signature.
	reload("")
	unsigned("3")
}

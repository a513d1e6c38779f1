package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// modesExprs writes the expressions of the build-mode scenario.
func modesExprs(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"det.nix": `derivation { name = "det"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out; echo same > $out/file" ]; }`,
		"nondet.nix": `derivation { name = "nondet"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/date +%s%N > $out" ]; }`,
		"modetrivial.nix": `derivation { name = "modetrivial"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo hi > $out" ]; }`,
		"repairdep.nix": `let dep = import ./modetrivial.nix; in derivation { name = "repairdep"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo ${dep} > $out" ]; }`,
		"quickfail.nix": `derivation { name = "quickfail"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo failing; exit 1" ]; }`,
		"slowok.nix": `derivation { name = "slowok"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/sleep 1; echo ok > $out" ]; }`,
		"feature.nix": `derivation { name = "feature"; system = "x86_64-linux"; builder = "/bin/sh";
  requiredSystemFeatures = [ "kvm" "gpu" ]; args = [ "-c" "echo hi > $out" ]; }`,
		"othersys.nix": `derivation { name = "othersys"; system = "aarch64-darwin"; builder = "/bin/sh";
  args = [ "-c" "echo hi > $out" ]; }`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755)
}

// modesScenario runs the build-mode scenario and returns, per step, the
// output path(s) or the error text (ANSI codes stripped).
func modesScenario(t *testing.T, s *testenv.Store, in string) map[string]string {
	t.Helper()
	out := map[string]string{}
	run := func(step, user string, args ...string) testenv.Result {
		r := s.Run(t, user, nil, args[0], args[1:]...)
		out[step+" (stderr)"] = ansi.ReplaceAllString(r.Stderr, "")
		if r.Err != nil {
			out[step] = "error: " + lastError(r.Stderr)
		} else {
			out[step] = strings.TrimSpace(r.Stdout)
		}
		return r
	}
	a := testenv.Alice
	nb := func(step, user string, args ...string) testenv.Result {
		return run(step, user, append([]string{"nix-build", "--no-out-link"}, args...)...)
	}
	nb("check before build", a, "--check", filepath.Join(in, "det.nix"))
	nb("det", a, filepath.Join(in, "det.nix"))
	nb("check det", a, "--check", filepath.Join(in, "det.nix"))
	nb("nondet", a, filepath.Join(in, "nondet.nix"))
	nb("check nondet", a, "--check", filepath.Join(in, "nondet.nix"))
	nb("repair untrusted", a, "--repair", filepath.Join(in, "modetrivial.nix"))
	b := testenv.Bob
	nb("repair trusted missing", b, "--repair", filepath.Join(in, "modetrivial.nix"))
	nb("repair trusted intact", b, "--repair", filepath.Join(in, "modetrivial.nix"))
	corrupt(t, out["repair trusted intact"])
	nb("repair trusted corrupted", b, "--repair", filepath.Join(in, "modetrivial.nix"))
	c, _ := os.ReadFile(out["repair trusted corrupted"])
	out["repaired content"] = string(c)
	nb("repairdep", a, filepath.Join(in, "repairdep.nix"))
	corrupt(t, out["repair trusted intact"])
	nb("repair closure", b, "--repair", filepath.Join(in, "repairdep.nix"))
	c, _ = os.ReadFile(out["repair trusted intact"])
	out["closure repaired content"] = string(c)
	nb("feature", a, filepath.Join(in, "feature.nix"))
	nb("othersys", a, filepath.Join(in, "othersys.nix"))
	run("instantiate quickfail", a, "nix-instantiate", filepath.Join(in, "quickfail.nix"))
	run("instantiate slowok", a, "nix-instantiate", filepath.Join(in, "slowok.nix"))
	run("realise no keep-going", a, "nix-store", "-r", out["instantiate quickfail"], out["instantiate slowok"])
	run("realise keep-going", a, "nix-store", "-r", "-k", out["instantiate quickfail"], out["instantiate slowok"])
	return out
}

// TestBuildModes: nix-build --check of a deterministic and of a
// nondeterministic derivation, --repair refused to an untrusted user and,
// for a trusted one, of missing, intact and corrupted outputs and of a
// corrupted path in an output's closure, requiredSystemFeatures and system mismatches, nix-store -r with and
// without --keep-going: privnixd's answers equal nix-daemon's.
func TestBuildModes(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	s := testenv.NewStore(t, buildConf)
	in := filepath.Join(s.Root, "in")
	os.MkdirAll(in, 0o755)
	modesExprs(t, in)
	testenv.StartPrivnixd(t, s)
	got := modesScenario(t, s, in)
	s.Reset(t)
	nd := testenv.StartNixDaemon(t, s)
	want := modesScenario(t, s, in)
	nd.Stop(t)
	for step, w := range want {
		switch step {
		case "repair untrusted (stderr)":
			// privnixd refuses an untrusted repair already when
			// nix-build adds the .drv with repair set (nix-daemon 2.8 lets
			// that upload repair); the error text is the same.
			continue
		case "realise no keep-going (stderr)", "realise keep-going (stderr)":
			// Two builds start at once: their lines come in any order.
			got[step], w = sortedLines(got[step]), sortedLines(w)
		}
		if got[step] != w {
			t.Errorf("%s:\nprivnixd:   %q\nnix-daemon: %q", step, got[step], w)
		}
	}
	if !strings.Contains(got["check nondet"], "may not be deterministic") || !strings.HasSuffix(got["check det"], "-det") {
		t.Errorf("check: %q / %q", got["check nondet"], got["check det"])
	}
	if got["repaired content"] != "hi\n" || got["closure repaired content"] != "hi\n" {
		t.Errorf("repair: output now %q, after repairing a referrer %q", got["repaired content"], got["closure repaired content"])
	}
	if !strings.Contains(got["realise no keep-going"], "build of '") || strings.Contains(got["realise keep-going"], "build of '") {
		t.Errorf("keep-going: %q / %q", got["realise no keep-going"], got["realise keep-going"])
	}
}

// corrupt changes a store file's contents behind the daemon's back.
func corrupt(t *testing.T, path string) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("corrupted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o444)
}

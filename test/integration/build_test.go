package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"privnix/internal/testenv"
)

const buildConf = `
allowed-users = *
trusted-users = root @privnix-test-trusted
build-users-group = privnix-test-bld
substituters =
require-sigs = true
sandbox = false
max-jobs = 2
cores = 3
`

// buildExprs writes the expressions the build tests realise.
func buildExprs(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"trivial.nix": `derivation { name = "trivial"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo hi > $out" ]; }`,
		"ident.nix": `derivation { name = "ident"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "{ /usr/bin/id -u; /usr/bin/id -G; pwd; /usr/bin/env | /usr/bin/sort; /bin/cat $fooPath; echo; } > $out" ];
  passAsFile = [ "foo" ]; foo = "passed as a file"; }`,
		"chain.nix": `let
  a = derivation { name = "chain-a"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo a > $out" ]; };
  b = derivation { name = "chain-b"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "{ /bin/cat ${a}; echo b; } > $out" ]; };
in derivation { name = "chain-c"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out; { /bin/cat ${b}; echo c; } > $out/file; echo ${b} > $out/ref" ]; }`,
		"fail.nix": `derivation { name = "fail"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line-$i; done; echo to-stderr >&2; exit 3" ]; }`,
		"depfail.nix": `let f = import ./fail.nix; in derivation { name = "depfail"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/cat ${f} > $out" ]; }`,
		"fixed.nix": `{ hash }: derivation { name = "fixed"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo fixed-content > $out" ]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = hash; }`,
		"fixedrec.nix": `derivation { name = "fixedrec"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out; echo x > $out/x" ]; outputHashMode = "recursive"; outputHashAlgo = "sha256";
  outputHash = "0000000000000000000000000000000000000000000000000000"; }`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755)
}

// The flat sha256 of "fixed-content\n".
const fixedRight = "sha256-AR0g2LScjiQhWSqTSD2RE4fsGhc1qicumK4TYcM39CI="

// buildScenario realises the expressions as alice and returns, per step,
// the output path(s) or the error text (ANSI codes stripped).
func buildScenario(t *testing.T, s *testenv.Store, in string) map[string]string {
	t.Helper()
	out := map[string]string{}
	a := testenv.Alice
	nb := func(step string, args ...string) testenv.Result {
		r := s.Run(t, a, nil, "nix-build", append([]string{"--no-out-link"}, args...)...)
		if r.Err != nil {
			out[step] = "error: " + lastError(r.Stderr)
		} else {
			out[step] = strings.TrimSpace(r.Stdout)
		}
		return r
	}
	nb("trivial", filepath.Join(in, "trivial.nix"))
	nb("trivial again", filepath.Join(in, "trivial.nix"))
	nb("chain", filepath.Join(in, "chain.nix"))
	nb("fail", filepath.Join(in, "fail.nix"))
	nb("depfail", filepath.Join(in, "depfail.nix"))
	nb("fixed right", filepath.Join(in, "fixed.nix"), "--argstr", "hash", fixedRight)
	nb("fixed wrong", filepath.Join(in, "fixed.nix"), "--argstr", "hash", "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	nb("fixed recursive wrong", filepath.Join(in, "fixedrec.nix"))
	run := func(step string, args ...string) string {
		r := s.Run(t, a, nil, args[0], args[1:]...)
		if r.Err != nil {
			out[step] = "error: " + lastError(r.Stderr)
		} else {
			out[step] = strings.TrimSpace(r.Stdout)
		}
		return out[step]
	}
	chainDrv := run("instantiate chain", "nix-instantiate", filepath.Join(in, "chain.nix"))
	run("outputs", "nix-store", "-q", "--outputs", chainDrv)
	run("valid derivers", "nix-store", "-q", "--valid-derivers", out["chain"])
	run("deriver", "nix-store", "-q", "--deriver", out["chain"])
	run("references", "nix-store", "-q", "--references", out["chain"])
	failDrv := run("instantiate fail", "nix-instantiate", filepath.Join(in, "fail.nix"))
	run("log", "nix-store", "-l", failDrv)
	run("realise chain", "nix-store", "-r", chainDrv)
	return out
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// lastError returns the client's error message, from its first "error:".
func lastError(stderr string) string {
	stderr = ansi.ReplaceAllString(stderr, "")
	if i := strings.Index(stderr, "error: "); i >= 0 {
		return strings.TrimSpace(stderr[i+len("error: "):])
	}
	return strings.TrimSpace(stderr)
}

func TestBuilds(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, buildConf)
	in := filepath.Join(s.Root, "in")
	os.MkdirAll(in, 0o755)
	buildExprs(t, in)

	d := testenv.StartPrivnixd(t, s)
	start := time.Now()
	got := buildScenario(t, s, in)
	elapsed := time.Since(start)

	// What a build sees: a build user of the pool, no other group, the
	// environment of nix-protocol.md 6.10.
	r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "ident.nix"))
	if r.Err != nil {
		t.Fatalf("ident: %v\n%s", r.Err, r.Stderr)
	}
	identOut := strings.TrimSpace(r.Stdout)
	b, err := os.ReadFile(identOut)
	if err != nil {
		t.Fatal(err)
	}
	checkIdent(t, s, string(b))
	d.Stop(t)
	t.Logf("privnixd: scenario in %v", elapsed)

	for step, want := range map[string]string{
		"trivial": "-trivial", "chain": "-chain-c", "fixed right": "-fixed",
	} {
		if !strings.HasSuffix(got[step], want) || !strings.HasPrefix(got[step], s.StoreDir+"/") {
			t.Errorf("%s: %q", step, got[step])
		}
	}
	if got["trivial again"] != got["trivial"] {
		t.Errorf("trivial again: %q", got["trivial again"])
	}
	if c, err := os.ReadFile(filepath.Join(got["chain"], "file")); err != nil || string(c) != "a\nb\nc\n" {
		t.Errorf("chain output %q, %v", c, err)
	}
	if c, _ := os.ReadFile(got["trivial"]); string(c) != "hi\n" {
		t.Errorf("trivial output %q", c)
	}
	// The client indents an error's later lines under "error: ".
	unindent := func(s string) string { return strings.ReplaceAll(s, "\n       ", "\n") }
	for step, want := range map[string]string{
		"fail":                  "failed with exit code 3;\nlast 10 log lines:",
		"depfail":               "1 dependencies of derivation",
		"fixed wrong":           "hash mismatch in fixed-output derivation",
		"fixed recursive wrong": "hash mismatch in fixed-output derivation",
	} {
		if !strings.Contains(unindent(got[step]), want) {
			t.Errorf("%s: %q, want it to contain %q", step, got[step], want)
		}
	}
	if f := unindent(got["fail"]); !strings.Contains(f, "> to-stderr\n") || strings.Contains(f, "> line-2\n") {
		t.Errorf("fail: the last 10 lines are not the tail:\n%s", got["fail"])
	}

	// The same expressions on nix-daemon give the same paths and texts.
	s.Reset(t)
	nd := testenv.StartNixDaemon(t, s)
	want := buildScenario(t, s, in)
	nd.Stop(t)
	for step, w := range want {
		if got[step] != w {
			t.Errorf("%s:\nprivnixd:   %q\nnix-daemon: %q", step, got[step], w)
		}
	}
}

// checkIdent checks what the ident builder wrote.
func checkIdent(t *testing.T, s *testenv.Store, out string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	if len(lines) < 4 {
		t.Fatalf("ident output:\n%s", out)
	}
	uid, _ := strconv.Atoi(lines[0])
	ok := false
	for i := 1; i <= 8; i++ {
		if u, err := userLookup(fmt.Sprintf("pnxbld%d", i)); err == nil && u == uid {
			ok = true
		}
	}
	if !ok {
		t.Errorf("built as uid %d, not a pnxbld user", uid)
	}
	if g := lookupGID(t, "pnxbld1"); lines[1] != strconv.Itoa(g) {
		t.Errorf("groups %q, want only %d", lines[1], g)
	}
	env := map[string]string{}
	for _, l := range lines[3:] {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	top := env["NIX_BUILD_TOP"]
	if !strings.HasPrefix(top, "/tmp/nix-build-") || lines[2] != top {
		t.Errorf("build top %q, cwd %q", top, lines[2])
	}
	for k, v := range map[string]string{
		"PATH": "/path-not-set", "HOME": "/homeless-shelter", "NIX_STORE": s.StoreDir, "NIX_BUILD_CORES": "3",
		"NIX_LOG_FD": "2", "TERM": "xterm-256color", "TMPDIR": top, "TMP": top, "TEMP": top, "TEMPDIR": top,
		"name": "ident", "system": "x86_64-linux", "builder": "/bin/sh",
	} {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	if !strings.HasPrefix(env["out"], s.StoreDir+"/") || env["foo"] != "" ||
		env["fooPath"] != top+"/.attr-1bp7cri8hplaz6hbz0v4f0nl44rl84q1sg25kgwqzipzd1mv89ic" {
		t.Errorf("out %q foo %q fooPath %q", env["out"], env["foo"], env["fooPath"])
	}
	if !strings.Contains(out, "passed as a file") {
		t.Errorf("passAsFile content missing:\n%s", out)
	}
}

package integration

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
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
		"multi.nix": `derivation { name = "multi"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = [ "out" "dev" "doc" ];
  args = [ "-c" "echo $dev > $out; /bin/mkdir $dev; echo hi > $dev/file; echo doc > $doc" ]; }`,
		"refs.nix": `{ check }: let dep = import ./trivial.nix; in derivation ({ name = "refs-${check}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo ${dep} > $out" ]; } // (if check == "allowed" then { allowedReferences = [ dep ]; }
  else if check == "disallowed" then { disallowedReferences = [ dep ]; }
  else if check == "requisites" then { allowedRequisites = [ "out" ]; }
  else { allowedReferences = [ "nonsense" ]; }))`,
		"structured.nix": `derivation { name = "structured"; system = "x86_64-linux"; builder = "/bin/bash"; __structuredAttrs = true;
  outputs = [ "out" "dev" ];
  str = "it's \"quoted\"\n\ttab"; int = 42; neg = -3; float = 1.5; yes = true; no = false; nul = null;
  list = [ 1 "two" true ]; set = { a = 1; b = "x y"; }; nested = [ [ 1 ] ]; "not-a-var" = 1;
  args = [ "-c" ''
    source $NIX_BUILD_TOP/.attrs.sh
    /bin/mkdir ''${outputs[dev]}
    { /bin/cat $NIX_BUILD_TOP/.attrs.json; echo; /bin/cat $NIX_BUILD_TOP/.attrs.sh; /usr/bin/env | /usr/bin/sort | /bin/grep -v '^_=\|^SHLVL=\|^OLDPWD='; } > ''${outputs[out]}
  '' ]; }`,
		"cycle.nix": `derivation { name = "cycle"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = [ "out" "dev" "bin" ];
  args = [ "-c" "echo $dev > $out; echo $bin > $dev; echo $out > $bin" ]; }`,
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
		out[step+" (stderr)"] = ansi.ReplaceAllString(r.Stderr, "")
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
	nb("multi", filepath.Join(in, "multi.nix"))
	if r := nb("structured", filepath.Join(in, "structured.nix")); r.Err == nil {
		b, _ := os.ReadFile(strings.Fields(r.Stdout)[0])
		out["structured (content)"] = string(b)
	}
	nb("multi dev", filepath.Join(in, "multi.nix"), "-A", "dev")
	nb("cycle", filepath.Join(in, "cycle.nix"))
	for _, c := range []string{"allowed", "disallowed", "requisites", "illegal"} {
		nb("references "+c, filepath.Join(in, "refs.nix"), "--argstr", "check", c)
	}
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
	run("nix build json", "nix", "--extra-experimental-features", "nix-command", "build", "--no-link", "--json", "-f", filepath.Join(in, "multi.nix"))
	run("nix build json built", "nix", "--extra-experimental-features", "nix-command", "build", "--no-link", "--json", "-f", filepath.Join(in, "trivial.nix"))
	return out
}

// span is when a parallelism test's builder ran, and as which uid.
type span struct {
	uid        string
	start, end int64
}

// readSpans reads the outputs nix-build printed, each "name start end" as
// the parallelism tests' builders write them.
func readSpans(t *testing.T, stdout string) []span {
	t.Helper()
	var spans []span
	for _, out := range strings.Fields(stdout) {
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		st, _ := strconv.ParseInt(f[1], 10, 64)
		en, _ := strconv.ParseInt(f[2], 10, 64)
		spans = append(spans, span{f[0], st, en})
	}
	return spans
}

// copyBusybox puts the host's static busybox into in/bb/bin as sh and
// busybox: the only tools a sandboxed test builder sees.
func copyBusybox(t *testing.T, in string) {
	t.Helper()
	if !staticELF("/bin/busybox") {
		t.Fatal("no static /bin/busybox: run scripts/setup-test-host.sh (it installs busybox-static)")
	}
	bb := filepath.Join(in, "bb", "bin")
	os.MkdirAll(bb, 0o755)
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"sh", "busybox"} {
		if err := os.WriteFile(filepath.Join(bb, n), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// lockBuildUsers takes the machine-wide lock of the pnxbld build users for
// the test (testenv.LockBuildUsers).
func lockBuildUsers(t *testing.T) {
	t.Helper()
	testenv.LockBuildUsers(t)
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

// newBuildStore is the set-up of a build test: root, the Nix client, the
// build users' lock, a store with nixConf and a directory for expressions.
func newBuildStore(t *testing.T, nixConf string) (s *testenv.Store, in string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	s = testenv.NewStore(t, nixConf)
	in = filepath.Join(s.Root, "in")
	os.MkdirAll(in, 0o755)
	return s, in
}

func TestBuilds(t *testing.T) {
	s, in := newBuildStore(t, buildConf)
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
		"trivial": "-trivial", "chain": "-chain-c", "fixed right": "-fixed", "references allowed": "-refs-allowed",
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
		"references disallowed": "is not allowed to refer to the following paths:\n  " + got["trivial"],
		"references requisites": "is not allowed to refer to the following paths:\n  " + got["trivial"],
		"references illegal":    "derivation contains an illegal reference specifier 'nonsense'",
		"cycle":                 "cycle detected in build of",
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
	start = time.Now()
	want := buildScenario(t, s, in)
	t.Logf("nix-daemon: scenario in %v", time.Since(start))
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

// TestBuildSchedule: two clients realising one derivation at once get one
// build; parallel clients with max-jobs 2 and a pool of two build uids
// (build-users-group empty, privnix-build-uids) never share a uid between
// two builds that overlap; a .drv whose text does not match its path or
// whose outputs are wrong is refused.
func TestBuildSchedule(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	s := testenv.NewStore(t, strings.Replace(buildConf, "build-users-group = privnix-test-bld", "build-users-group =\ntimeout = 2\nmax-build-log-size = 10000", 1))
	s.SetPrivnixConf(t, "privnix-build-uids = 1879179264-1879179265\n")
	in := filepath.Join(s.Root, "in")
	os.MkdirAll(in, 0o755)
	os.WriteFile(filepath.Join(in, "par.nix"), []byte(`{ n }: derivation { name = "par-${n}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "s=$(/bin/date +%s%N); /bin/sleep 0.3; { /usr/bin/id -u; echo $s; /bin/date +%s%N; } > $out" ]; }`), 0o644)
	d := testenv.StartPrivnixd(t, s)

	type res struct {
		out string
		err error
	}
	run := func(user string, args ...string) chan res {
		c := make(chan res, 1)
		go func() {
			r := s.Run(t, user, nil, "nix-build", append([]string{"--no-out-link"}, args...)...)
			if r.Err != nil {
				r.Err = fmt.Errorf("%v: %s", r.Err, r.Stderr)
			}
			c <- res{strings.TrimSpace(r.Stdout), r.Err}
		}()
		return c
	}
	// One derivation, two clients.
	a := run(testenv.Alice, filepath.Join(in, "par.nix"), "--argstr", "n", "same")
	b := run(testenv.Bob, filepath.Join(in, "par.nix"), "--argstr", "n", "same")
	ra, rb := <-a, <-b
	if ra.err != nil || rb.err != nil || ra.out != rb.out {
		t.Fatalf("same derivation: %q %v / %q %v", ra.out, ra.err, rb.out, rb.err)
	}
	if n := strings.Count(d.Log.String(), "build output registered"); n != 1 {
		t.Errorf("the derivation was built %d times", n)
	}

	// Eight builds at once, two build uids.
	var chans []chan res
	for i := range 8 {
		chans = append(chans, run(testenv.Alice, filepath.Join(in, "par.nix"), "--argstr", "n", strconv.Itoa(i)))
	}
	var spans []span
	for _, c := range chans {
		r := <-c
		if r.err != nil {
			t.Fatal(r.err)
		}
		b, err := os.ReadFile(r.out)
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		if len(f) != 3 {
			t.Fatalf("output %q", b)
		}
		st, _ := strconv.ParseInt(f[1], 10, 64)
		en, _ := strconv.ParseInt(f[2], 10, 64)
		spans = append(spans, span{f[0], st, en})
	}
	uids := map[string]bool{}
	for i, x := range spans {
		uids[x.uid] = true
		for _, y := range spans[i+1:] {
			if x.uid == y.uid && x.start < y.end && y.start < x.end {
				t.Errorf("two builds overlapped as uid %s", x.uid)
			}
		}
	}
	for u := range uids {
		if u != "1879179264" && u != "1879179265" {
			t.Errorf("built as uid %s, not from privnix-build-uids", u)
		}
	}

	// One client, four independent derivations: built two at a time.
	os.WriteFile(filepath.Join(in, "list.nix"), []byte(`map (n: import ./par.nix { n = "list-${toString n}"; }) [ 1 2 3 4 ]`), 0o644)
	lr := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "list.nix"))
	if lr.Err != nil {
		t.Fatalf("list: %v\n%s", lr.Err, lr.Stderr)
	}
	listSpans := readSpans(t, lr.Stdout)
	overlapped := false
	for i, x := range listSpans {
		for _, y := range listSpans[i+1:] {
			if x.start < y.end && y.start < x.end {
				overlapped = true
				if x.uid == y.uid {
					t.Errorf("two builds overlapped as uid %s", x.uid)
				}
			}
		}
	}
	if len(listSpans) != 4 || !overlapped {
		t.Errorf("a list of 4 derivations with max-jobs 2: %d built, some at once: %v", len(listSpans), overlapped)
	}

	// 300 independent derivations in one nix-build: all built, two at a
	// time at most, never two at once as one uid.
	if !testing.Short() {
		os.WriteFile(filepath.Join(in, "many.nix"), []byte(`map (n: import ./quick.nix { n = toString n; }) (builtins.genList (x: x) 300)`), 0o644)
		os.WriteFile(filepath.Join(in, "quick.nix"), []byte(`{ n }: derivation { name = "quick-${n}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "s=$(/bin/date +%s%N); { /usr/bin/id -u; echo $s; /bin/date +%s%N; } > $out" ]; }`), 0o644)
		manyStart := time.Now()
		if r := s.Run(t, testenv.Alice, nil, "nix-instantiate", filepath.Join(in, "many.nix")); r.Err != nil {
			t.Fatalf("instantiating 300 derivations: %v\n%s", r.Err, r.Stderr)
		}
		t.Logf("300 derivations instantiated in %v", time.Since(manyStart))
		mr := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "many.nix"))
		if mr.Err != nil {
			t.Fatalf("300 derivations: %v\n%s", mr.Err, mr.Stderr)
		}
		t.Logf("300 derivations built in %v", time.Since(manyStart))
		many := readSpans(t, mr.Stdout)
		if len(many) != 300 {
			t.Errorf("%d outputs", len(many))
		}
		for i, x := range many {
			for _, y := range many[i+1:] {
				if x.start < y.end && y.start < x.end && x.uid == y.uid {
					t.Fatalf("two builds overlapped as uid %s", x.uid)
				}
			}
			// At x's start, at most one other build is running.
			at := 0
			for _, y := range many {
				if y.start <= x.start && x.start < y.end {
					at++
				}
			}
			if at > 2 {
				t.Fatalf("%d builds ran at once with max-jobs 2", at)
			}
		}
	}

	// A builder that outlives timeout is killed.
	os.WriteFile(filepath.Join(in, "slow.nix"), []byte(`derivation { name = "slow"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo started; /bin/sleep 30; echo > $out" ]; }`), 0o644)
	slowStart := time.Now()
	r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "slow.nix"))
	if r.Err == nil || !strings.Contains(lastError(r.Stderr), "timed out after 2 seconds") || time.Since(slowStart) > 20*time.Second {
		t.Errorf("slow build: %v after %v\n%s", r.Err, time.Since(slowStart), r.Stderr)
	}

	// A builder that logs too much is killed.
	os.WriteFile(filepath.Join(in, "chatty.nix"), []byte(`derivation { name = "chatty"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "while :; do echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done" ]; }`), 0o644)
	r = s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "chatty.nix"))
	if r.Err == nil || !strings.Contains(lastError(r.Stderr), "killed after writing more than 10000 bytes of log output") {
		t.Errorf("chatty build: %v\n%s", r.Err, lastError(r.Stderr))
	}

	// A .drv that is not what it claims.
	bad := filepath.Join(in, "forged.drv")
	os.WriteFile(bad, []byte(`Derive([("out","`+s.StoreDir+`/00000000000000000000000000000000-forged","","")],[],[],"x86_64-linux","/bin/sh",["-c","echo"],[("builder","/bin/sh"),("name","forged"),("out","`+s.StoreDir+`/00000000000000000000000000000000-forged"),("system","x86_64-linux")])`), 0o644)
	r = s.Run(t, testenv.Alice, nil, "nix-store", "--add", bad)
	if r.Err != nil {
		t.Fatal(r.Err, r.Stderr)
	}
	r = s.Run(t, testenv.Alice, nil, "nix-store", "-r", strings.TrimSpace(r.Stdout))
	if r.Err == nil || !strings.Contains(r.Stderr, "refused") {
		t.Errorf("forged derivation: %v\n%s", r.Err, r.Stderr)
	}
}

// TestSandboxedBuild builds with sandbox = true: the builder (a static
// busybox from the store) sees only its inputs, /build, Nix's /etc stubs
// and runs as a build user; the output path equals nix-daemon's.
func TestSandboxedBuild(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	s := testenv.NewStore(t, strings.Replace(buildConf, "sandbox = false", "sandbox = true", 1))
	in := filepath.Join(s.Root, "in")
	copyBusybox(t, in)
	os.Chmod(filepath.Join(in, "bb"), 0o755)
	os.Chmod(in, 0o755)
	os.WriteFile(filepath.Join(in, "sandboxed.nix"), []byte(`let bb = ./bb; in derivation { name = "sandboxed"; system = "x86_64-linux";
  builder = "${bb}/bin/sh";
  args = [ "-c" "B=${bb}/bin/busybox; { $B id -u; $B id -G; $B pwd; $B hostname; $B cat /etc/passwd; $B ls /; } > $out" ]; }`), 0o644)
	testenv.StartPrivnixd(t, s)
	r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "sandboxed.nix"))
	if r.Err != nil {
		t.Fatalf("%v\n%s", r.Err, r.Stderr)
	}
	got := strings.TrimSpace(r.Stdout)
	out, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	uid, _ := strconv.Atoi(lines[0])
	if u1, _ := userLookup("pnxbld1"); uid < u1-8 || uid > u1+8 || uid == 0 {
		t.Errorf("sandboxed build as uid %d", uid)
	}
	if lines[2] != "/build" || lines[3] != "localhost" || !strings.Contains(string(out), "nixbld:x:"+lines[0]+":") {
		t.Errorf("sandbox:\n%s", out)
	}
	if strings.Contains(string(out), "\nhome\n") || strings.Contains(string(out), "\nroot\n") {
		t.Errorf("host directories visible in the sandbox:\n%s", out)
	}
	s.Reset(t)
	nd := testenv.StartNixDaemon(t, s)
	r = s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "sandboxed.nix"))
	nd.Stop(t)
	if r.Err != nil {
		t.Logf("nix-daemon could not build it: %v\n%s", r.Err, r.Stderr)
	} else if w := strings.TrimSpace(r.Stdout); w != got {
		t.Errorf("output path %s, nix-daemon's %s", got, w)
	}
}

// TestBuildOverhead (PRIVNIX_BUILD_BENCH=1) times nix-build of n fresh
// trivial derivations, one client each, on privnixd and on nix-daemon.
func TestBuildOverhead(t *testing.T) {
	if os.Getenv("PRIVNIX_BUILD_BENCH") == "" {
		t.Skip("PRIVNIX_BUILD_BENCH=1 runs it")
	}
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	const n = 20
	s := testenv.NewStore(t, buildConf)
	in := filepath.Join(s.Root, "in")
	os.MkdirAll(in, 0o755)
	os.WriteFile(filepath.Join(in, "one.nix"), []byte(`{ n }: derivation { name = "one-${n}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo ${n} > $out" ]; }`), 0o644)
	bench := func(who string) {
		start := time.Now()
		for i := range n {
			r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "one.nix"), "--argstr", "n", strconv.Itoa(i))
			if r.Err != nil {
				t.Fatalf("%s: %v\n%s", who, r.Err, r.Stderr)
			}
		}
		t.Logf("%s: %v per nix-build of a fresh trivial derivation (%d builds)", who, time.Since(start)/n, n)
	}
	os.WriteFile(filepath.Join(in, "many.nix"), []byte(`map (n: import ./one.nix { n = "many-${toString n}"; }) (builtins.genList (x: x) 300)`), 0o644)
	many := func(who string) {
		start := time.Now()
		if r := s.Run(t, testenv.Alice, nil, "nix-instantiate", filepath.Join(in, "many.nix")); r.Err != nil {
			t.Fatalf("%s: %v\n%s", who, r.Err, r.Stderr)
		}
		mid := time.Now()
		if r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "many.nix")); r.Err != nil {
			t.Fatalf("%s: %v\n%s", who, r.Err, r.Stderr)
		}
		t.Logf("%s: 300 derivations instantiated in %v, built (max-jobs 2) in %v", who, mid.Sub(start), time.Since(mid))
	}
	d := testenv.StartPrivnixd(t, s)
	bench("privnixd")
	many("privnixd")
	d.Stop(t)
	s.Reset(t)
	nd := testenv.StartNixDaemon(t, s)
	bench("nix-daemon")
	many("nix-daemon")
	nd.Stop(t)
}

// TestHostileBuilder: a builder (sandbox = false, the host visible
// read-only) tries to harm the host and the store; nothing it does
// survives: the root-owned sentinel and its input are unchanged, its output
// is canonical (no setuid bit, no hard link to the sentinel), and no
// process of a build user is left.
func TestHostileBuilder(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	s := testenv.NewStore(t, buildConf)
	in := filepath.Join(s.Root, "in")
	os.MkdirAll(in, 0o755)
	sdir, err := os.MkdirTemp("/var/tmp", "privnix-sentinel-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sdir)
	os.Chmod(sdir, 0o755)
	sentinel := filepath.Join(sdir, "sentinel")
	os.WriteFile(sentinel, []byte("sentinel\n"), 0o644)
	os.WriteFile(filepath.Join(in, "input.txt"), []byte("input\n"), 0o644)
	os.WriteFile(filepath.Join(in, "hostile.nix"), []byte(`derivation { name = "hostile"; system = "x86_64-linux"; builder = "/bin/sh";
  sentinel = "`+sentinel+`"; src = ./input.txt;
  args = [ "-c" ''
    /bin/mkdir $out
    echo x > $out/suid; /bin/chmod 4755 $out/suid && echo "setuid file created"
    /bin/chmod 4755 $out && echo "setuid dir"
    /bin/ln $sentinel $out/hardlink && echo "hard link to the sentinel"
    /bin/ln -s $sentinel $out/symlink
    echo pwned > $sentinel && echo "sentinel written"
    echo pwned >> $src && echo "input written"
    /bin/mkdir $NIX_STORE/squat && echo "store squatted"
    /bin/chmod 777 $NIX_BUILD_TOP && echo "build dir opened"
    (/bin/sleep 1000 &) ; /bin/sleep 1000 &
    echo done > $out/log
  '' ]; }`), 0o644)
	testenv.StartPrivnixd(t, s)
	r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, "hostile.nix"))
	t.Logf("nix-build: %v\n%s", r.Err, r.Stderr)
	if b, _ := os.ReadFile(sentinel); string(b) != "sentinel\n" {
		t.Errorf("sentinel now %q", b)
	}
	if _, err := os.Stat(filepath.Join(s.StoreDir, "squat")); err == nil {
		t.Error("the builder created a name in the store")
	}
	ents, _ := os.ReadDir(s.StoreDir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), "-input.txt") {
			if b, _ := os.ReadFile(filepath.Join(s.StoreDir, e.Name())); string(b) != "input\n" {
				t.Errorf("input now %q", b)
			}
		}
	}
	if out := strings.TrimSpace(r.Stdout); r.Err == nil {
		filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			writable := fi.Mode()&os.ModeSymlink == 0 && fi.Mode()&0o222 != 0
			if st.Uid != 0 || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || writable || (fi.Mode().IsRegular() && st.Nlink != 1) {
				t.Errorf("%s: uid %d, mode %v, %d links", p, st.Uid, fi.Mode(), st.Nlink)
			}
			return nil
		})
	}
	// Nothing of the build survives it.
	for i := 1; i <= 8; i++ {
		uid, err := userLookup(fmt.Sprintf("pnxbld%d", i))
		if err != nil {
			continue
		}
		if pids := uidProcesses(uint32(uid)); len(pids) > 0 {
			t.Errorf("processes of pnxbld%d left: %v", i, pids)
		}
	}
}

// uidProcesses lists the processes with uid among their real, effective
// and saved uids.
func uidProcesses(uid uint32) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(l, "Uid:"); ok {
				if slices.Contains(strings.Fields(f)[:3], strconv.FormatUint(uint64(uid), 10)) {
					out = append(out, e.Name())
				}
			}
		}
	}
	return out
}

// staticELF reports whether path is an ELF executable without an
// interpreter (it runs in a sandbox holding only itself).
func staticELF(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

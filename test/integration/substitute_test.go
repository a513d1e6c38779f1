package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"privnix/frontend/wire"
	"privnix/internal/nixclient"
	"privnix/internal/testenv"
	"privnix/internal/testvectors"
	"privnix/nix/narinfo"
	"privnix/nix/narinfofile"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// Substitution from binary caches made by `nix copy --to file://…` and served
// over loopback HTTP by a Go file server.

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
	e.s = testenv.NewStore(t, buildConf+"trusted-public-keys = "+e.pubKey+"\n"+extraConf)
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
	// Two servers of the cache; the second says Priority: 10 (the first has
	// Nix's default 50), so it is asked first: the copy lines name it.
	files := http.FileServer(http.Dir(dir))
	first := serve(t, files)
	second := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/nix-cache-info" {
			w.Write([]byte("StoreDir: " + e.s.StoreDir + "\nPriority: 10\n"))
			return
		}
		files.ServeHTTP(w, r)
	}))
	url := first + " " + second
	d := testenv.StartPrivnixd(t, e.s)
	defer d.Stop(t)
	// substitute = false (the client's useSubstitutes): the cache is not asked, the build runs and fails.
	r := e.build(t, testenv.Bob, "a", "--option", "substituters", url, "--option", "substitute", "false")
	if r.Err == nil || !strings.Contains(r.Stderr, "failed with exit code 7") {
		t.Fatalf("substitute = false: %v\n%s", r.Err, r.Stderr)
	}
	r = e.build(t, testenv.Bob, "a", "--option", "substituters", url)
	if r.Err != nil {
		t.Fatalf("nix-build from the cache: %v\n%s\n%s", r.Err, r.Stderr, d.Log.String())
	}
	if got := strings.TrimSpace(r.Stdout); got != out {
		t.Fatalf("got %q, want %q", got, out)
	}
	copying := copyLines(r.Stderr)
	if !strings.Contains(copying, "from '"+second+"'") || strings.Contains(copying, "from '"+first+"'") {
		t.Errorf("not fetched from the cache with the better priority:\n%s", copying)
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
	d.Stop(t)

	// nix-daemon gets the same path from the same cache.
	e.s.Reset(t)
	nd := testenv.StartNixDaemon(t, e.s)
	defer nd.Stop(t)
	r = e.build(t, testenv.Bob, "a", "--option", "substituters", url)
	if r.Err != nil || strings.TrimSpace(r.Stdout) != out {
		t.Fatalf("nix-daemon: %q, %v\n%s", r.Stdout, r.Err, r.Stderr)
	}
	// The same paths copied (nix-daemon's choice between the two servers
	// depends on its on-disk cache of nix-cache-info, so the URLs are not compared).
	strip := func(s string) string { return regexp.MustCompile(` from '[^']*'`).ReplaceAllString(s, "") }
	if want := copyLines(r.Stderr); strip(copying) != strip(want) || want == "" {
		t.Errorf("the client's copy lines:\nprivnixd:   %q\nnix-daemon: %q", copying, want)
	}
}

// copyLines returns the client's "copying path" lines, sorted (paths are
// fetched in parallel).
func copyLines(stderr string) string {
	var lines []string
	for _, l := range strings.Split(ansi.ReplaceAllString(stderr, ""), "\n") {
		if strings.HasPrefix(l, "copying path ") {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// outcome is what a client run shows: its output or its error, and its
// warning lines (ANSI codes stripped).
func outcome(r testenv.Result) string {
	var warn []string
	for _, l := range strings.Split(ansi.ReplaceAllString(r.Stderr, ""), "\n") {
		if strings.HasPrefix(l, "warning: ") {
			warn = append(warn, l)
		}
	}
	res := strings.TrimSpace(r.Stdout)
	if r.Err != nil {
		res = "error: " + lastError(r.Stderr)
	}
	return strings.Join(append(warn, res), "\n")
}

// An untrusted user's substituters: an untrusted cache is ignored with
// nix-daemon's warning (the build then runs, and fails without the marker);
// a cache in trusted-substituters is used only for paths signed by a key in
// trusted-public-keys. Each answer equals nix-daemon 2.8's.
func TestSubstituteUntrustedUser(t *testing.T) {
	e := newSubstEnv(t, "")
	unknownDir := t.TempDir()
	os.Chmod(unknownDir, 0o755)
	unknownKey := filepath.Join(unknownDir, "sk")
	rootRun(t, nil, "nix-store", "--generate-binary-cache-key", "privnix-unknown-1", unknownKey, filepath.Join(unknownDir, "pk"))

	caches := map[string]string{} // tag -> URL
	outs := map[string]string{}
	for tag, params := range map[string]string{
		"signed":    "secret-key=" + e.secret,
		"unsigned":  "",
		"unknown":   "secret-key=" + unknownKey,
		"wrong":     "secret-key=" + e.secret,
		"untrusted": "secret-key=" + e.secret,
	} {
		dir, out := e.makeCache(t, tag, params)
		if tag == "wrong" {
			breakSignatures(t, dir)
		}
		caches[tag] = serve(t, http.FileServer(http.Dir(dir)))
		outs[tag] = out
	}
	conf := buildConf + "trusted-public-keys = " + e.pubKey + "\ntrusted-substituters ="
	for _, tag := range []string{"signed", "unsigned", "unknown", "wrong"} {
		conf += " " + caches[tag]
	}
	if err := os.WriteFile(filepath.Join(e.s.ConfDir, "nix.conf"), []byte(conf+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	scenario := func() map[string]string {
		got := map[string]string{}
		for tag, url := range caches {
			got[tag] = outcome(e.build(t, testenv.Alice, tag, "--option", "substituters", url))
		}
		return got
	}
	d := testenv.StartPrivnixd(t, e.s)
	got := scenario()
	d.Stop(t)
	if got["signed"] != outs["signed"] {
		t.Errorf("signed cache: %q, want %q", got["signed"], outs["signed"])
	}
	for _, tag := range []string{"unsigned", "unknown", "wrong", "untrusted"} {
		if !strings.Contains(got[tag], "failed with exit code 7") {
			t.Errorf("%s cache: %q, want a local build (which fails)", tag, got[tag])
		}
	}
	if !strings.Contains(got["untrusted"], "warning: ignoring untrusted substituter '"+caches["untrusted"]+"'") {
		t.Errorf("untrusted cache: no warning in %q", got["untrusted"])
	}
	e.s.Reset(t)
	nd := testenv.StartNixDaemon(t, e.s)
	want := scenario()
	nd.Stop(t)
	for tag := range caches {
		if got[tag] != want[tag] {
			t.Errorf("%s:\nprivnixd:   %q\nnix-daemon: %q", tag, got[tag], want[tag])
		}
	}
}

// breakSignatures changes one byte of every signature in the cache's
// narinfos (still valid base64, no longer a signature of the fingerprint).
func breakSignatures(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "Sig: ") {
				c := []byte(l)
				k := len(c) - 10
				if c[k] == 'A' {
					c[k] = 'B'
				} else {
					c[k] = 'A'
				}
				lines[i] = string(c)
			}
		}
		if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// hostileCache serves a cache directory, but for the top path's narinfo
// and NAR does what mode says.
type hostileCache struct {
	dir, mode string
	topHash   string            // hash part of the path whose NAR is hostile
	narinfos  map[string][]byte // hash part -> the narinfo served (others: the file)
	nar       []byte            // the NAR served for it (nil = the file)
	files     http.Handler
}

func (h *hostileCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b, ok := h.narinfos[strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), ".narinfo")]; ok {
		w.Write(b)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/nar/") && h.isTopNar(r.URL.Path) {
		switch {
		case h.mode == "endless":
			zeros := make([]byte, 64<<10)
			for {
				if _, err := w.Write(zeros); err != nil {
					return
				}
			}
		case h.mode == "truncated":
			b, _ := os.ReadFile(filepath.Join(h.dir, r.URL.Path))
			w.Write(b[:len(b)/2])
			return
		case h.nar != nil:
			w.Write(h.nar)
			return
		}
	}
	h.files.ServeHTTP(w, r)
}

// isTopNar says whether the URL is the NAR the top narinfo names.
func (h *hostileCache) isTopNar(path string) bool {
	b, err := os.ReadFile(filepath.Join(h.dir, h.topHash+".narinfo"))
	return err == nil && strings.Contains(string(b), "URL: "+strings.TrimPrefix(path, "/")+"\n")
}

// resign rewrites a narinfo with change applied and signs it again with
// the cache's key, so that only the change can make it fail.
func (e *substEnv) resign(t *testing.T, h *hostileCache, hashPart string, change func(n *narinfofile.NarInfo)) {
	t.Helper()
	dir, err := storepath.NewDir(e.s.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(h.dir, hashPart+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := narinfofile.Parse(dir, b)
	if err != nil {
		t.Fatal(err)
	}
	change(n)
	skText, err := os.ReadFile(e.secret)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := narinfo.ParseSecretKey(strings.TrimSpace(string(skText)))
	if err != nil {
		t.Fatal(err)
	}
	n.Sigs = []narinfo.Signature{sk.Sign(n.Fingerprint(dir))}
	h.narinfos[hashPart] = []byte(n.String(dir))
}

// Hostile caches, each validly signed: references that form a cycle, a
// NAR whose hash is not the narinfo's, a truncated NAR, a malicious NAR (an
// entry named ".."), an endless response. Each is refused, the path stays invalid and absent,
// staging is empty, and the daemon goes on serving.
func TestSubstituteHostileCaches(t *testing.T) {
	e := newSubstEnv(t, "")
	dir, out := e.makeCache(t, "hostile", "compression=none&secret-key="+e.secret)
	top := filepath.Base(out)[:32]
	storeDir, err := storepath.NewDir(e.s.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	topPath, err := storeDir.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	topInfo, err := os.ReadFile(filepath.Join(dir, top+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	dep := "" // the dependency's hash part, from the top narinfo's References
	for _, l := range strings.Split(string(topInfo), "\n") {
		if refs, ok := strings.CutPrefix(l, "References: "); ok {
			for _, r := range strings.Fields(refs) {
				if r[:32] != top {
					dep = r[:32]
				}
			}
		}
	}
	if dep == "" {
		t.Fatalf("no dependency in\n%s", topInfo)
	}
	bad, err := os.ReadFile(filepath.Join(testvectors.Dir(t), "libutil-nars", "dotdot.nar"))
	if err != nil {
		t.Fatal(err)
	}
	d := testenv.StartPrivnixd(t, e.s)
	defer d.Stop(t)
	for _, c := range []struct {
		mode, want string
	}{
		{"cycle", "form a cycle"}, // first: later cases make the dependency valid
		{"hash", "hash mismatch importing path"},
		{"truncated", "truncated"},
		{"malicious", "the NAR is malformed"},
		{"endless", "is larger than the narinfo says"},
	} {
		h := &hostileCache{dir: dir, mode: c.mode, topHash: top, narinfos: map[string][]byte{}, files: http.FileServer(http.Dir(dir))}
		switch c.mode {
		case "cycle":
			e.resign(t, h, dep, func(n *narinfofile.NarInfo) { n.References = append(n.References, topPath) })
		case "hash":
			e.resign(t, h, top, func(n *narinfofile.NarInfo) { n.NarHash = nixhash.Sum(nixhash.SHA256, []byte("not the NAR")) })
		case "malicious":
			h.nar = bad
			e.resign(t, h, top, func(n *narinfofile.NarInfo) {
				n.NarHash = nixhash.Sum(nixhash.SHA256, bad)
				n.FileHash = n.NarHash
				n.NarSize, n.FileSize = uint64(len(bad)), uint64(len(bad))
			})
		}
		url := serve(t, h)
		r := e.s.Run(t, testenv.Bob, nil, "nix-store", "-r", out, "--option", "substituters", url)
		if r.Err == nil || !strings.Contains(ansi.ReplaceAllString(r.Stderr, ""), c.want) {
			t.Errorf("%s: %v, want an error containing %q:\n%s", c.mode, r.Err, c.want, r.Stderr)
		}
		if v := e.s.Run(t, testenv.Alice, nil, "nix-store", "--check-validity", out); v.Err == nil {
			t.Errorf("%s: %s is valid", c.mode, out)
		}
		if _, err := os.Lstat(out); err == nil {
			t.Errorf("%s: %s exists in the store", c.mode, out)
		}
		if staging, _ := os.ReadDir(filepath.Join(e.s.StoreDir, ".privnix-staging")); len(staging) != 0 {
			t.Errorf("%s: the staging directory holds %d entries", c.mode, len(staging))
		}
	}
	// Still serving: the good cache gives the path.
	good := serve(t, http.FileServer(http.Dir(dir)))
	if r := e.s.Run(t, testenv.Bob, nil, "nix-store", "-r", out, "--option", "substituters", good); r.Err != nil {
		t.Fatalf("after the hostile caches: %v\n%s", r.Err, r.Stderr)
	}
}

// The queries: nix-build --dry-run (QueryMissing: what will be fetched,
// with download and unpacked sizes) and QuerySubstitutablePaths/Infos
// (ops 32 and 30) answer as nix-daemon's do.
func TestSubstituteQueries(t *testing.T) {
	e := newSubstEnv(t, "")
	dir, out := e.makeCache(t, "query", "secret-key="+e.secret)
	// QuerySubstitutablePaths asks only caches that want mass queries.
	f, err := os.OpenFile(filepath.Join(dir, "nix-cache-info"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("WantMassQuery: 1\n")
	f.Close()
	url := serve(t, http.FileServer(http.Dir(dir)))
	conf := buildConf + "trusted-public-keys = " + e.pubKey + "\nsubstituters = " + url + "\n"
	if err := os.WriteFile(filepath.Join(e.s.ConfDir, "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// A path no cache has: another hash part (Nix looks narinfos up by hash part only).
	base := filepath.Base(out)
	other := "0"
	if base[0] == '0' {
		other = "1"
	}
	absent := filepath.Join(filepath.Dir(out), other+base[1:])
	scenario := func() map[string]string {
		got := map[string]string{}
		r := e.build(t, testenv.Alice, "query", "--dry-run")
		got["dry-run"] = ansi.ReplaceAllString(r.Stderr, "")
		c, err := nixclient.Dial(e.s.SocketPath, wire.V(34))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.SetOptions(); err != nil {
			t.Fatal(err)
		}
		paths, err := c.QuerySubstitutablePaths([]string{out, absent})
		got["paths"] = fmt.Sprint(paths, err)
		infos, err := c.QuerySubstitutablePathInfos([]string{out, absent})
		got["infos"] = fmt.Sprintf("%+v %v", infos, err)
		// EnsurePath of a path no cache has: the daemon's error.
		got["ensure absent"] = fmt.Sprint(c.EnsurePath(absent))
		// QueryValidPaths with substitute: the path (and its closure) comes from the cache first.
		valid, err := c.QueryValidPaths([]string{out, absent}, true)
		got["valid+substitute"] = fmt.Sprint(valid, err)
		return got
	}
	d := testenv.StartPrivnixd(t, e.s)
	got := scenario()
	d.Stop(t)
	// On an empty store again (a deletion would race the temp roots of the
	// connections just closed): EnsurePath substitutes.
	e.s.Reset(t)
	d = testenv.StartPrivnixd(t, e.s)
	c, err := nixclient.Dial(e.s.SocketPath, wire.V(34))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetOptions(); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsurePath(out); err != nil {
		t.Errorf("EnsurePath: %v", err)
	} else if v := e.s.Run(t, testenv.Alice, nil, "nix-store", "--check-validity", out); v.Err != nil {
		t.Errorf("after EnsurePath: %v\n%s", v.Err, v.Stderr)
	}
	c.Close()
	d.Stop(t)
	// And nix copy --from the cache over HTTP (the client reads it; AddMultipleToStore).
	e.s.Reset(t)
	d = testenv.StartPrivnixd(t, e.s)
	if r := e.s.Run(t, testenv.Bob, nil, "nix", "--extra-experimental-features", "nix-command", "copy", "--from", url, out); r.Err != nil {
		t.Errorf("nix copy --from: %v\n%s", r.Err, r.Stderr)
	} else if v := e.s.Run(t, testenv.Alice, nil, "nix-store", "--check-validity", out); v.Err != nil {
		t.Errorf("after nix copy --from: %v\n%s", v.Err, v.Stderr)
	}
	d.Stop(t)
	if !strings.Contains(got["dry-run"], "these 2 paths will be fetched") || !strings.Contains(got["infos"], out) ||
		got["paths"] != "["+out+"] <nil>" || got["valid+substitute"] != "["+out+"] <nil>" {
		t.Errorf("privnixd: %q", got)
	}
	e.s.Reset(t)
	nd := testenv.StartNixDaemon(t, e.s)
	want := scenario()
	nd.Stop(t)
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s:\nprivnixd:   %q\nnix-daemon: %q", k, got[k], w)
		}
	}
}

// A fetcher at work runs as a uid of its own (neither root nor the client),
// with no capability, no groups, no_new_privs and a seccomp filter, like
// every child that reads untrusted bytes.
func TestLiveFetcherIsConfined(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, buildConf)
	release := make(chan struct{})
	asked := make(chan struct{}, 1)
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/nix-cache-info" {
			select {
			case asked <- struct{}{}:
			default:
			}
			<-release
		}
		http.NotFound(w, r)
	}))
	d := testenv.StartPrivnixd(t, s)
	defer d.Stop(t)
	missing := s.StoreDir + "/00000000000000000000000000000000-absent"
	done := make(chan testenv.Result, 1)
	go func() {
		done <- s.Run(t, testenv.Bob, nil, "nix-store", "-r", missing, "--option", "substituters", url)
	}()
	select {
	case <-asked:
	case r := <-done:
		t.Fatalf("the client finished before a fetcher asked the cache: %v\n%s", r.Err, r.Stderr)
	}
	var fetchers []map[string]string
	for _, pid := range children(t, d.Cmd.Process.Pid) {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "privnix-fetch" {
			fetchers = append(fetchers, procStatus(t, pid))
		}
	}
	close(release)
	r := <-done
	if len(fetchers) == 0 {
		t.Fatal("no privnix-fetch process while the cache was being asked")
	}
	bob := lookupUID(t, testenv.Bob)
	t.Logf("%d fetcher(s); the first: Uid %s, CapBnd %s, Seccomp %s", len(fetchers), fetchers[0]["Uid"], fetchers[0]["CapBnd"], fetchers[0]["Seccomp"])
	for _, st := range fetchers {
		for _, k := range []string{"Uid", "Gid"} {
			for _, id := range strings.Fields(st[k]) {
				if id == "0" || id == strconv.Itoa(bob) {
					t.Errorf("%s = %q: a fetcher must run as neither root nor the client", k, st[k])
				}
			}
		}
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"} {
			if st[k] != "0000000000000000" {
				t.Errorf("%s = %s, want none", k, st[k])
			}
		}
		if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" || st["Groups"] != "" {
			t.Errorf("NoNewPrivs = %s, Seccomp = %s, Groups = %q; want 1, 2 (filter), none", st["NoNewPrivs"], st["Seccomp"], st["Groups"])
		}
	}
	if r.Err == nil {
		t.Errorf("realising a path no cache has succeeded:\n%s", r.Stdout)
	}
}

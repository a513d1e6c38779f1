package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"privnix/internal/testenv"
)

const storeConf = `
allowed-users = *
trusted-users = root @privnix-test-trusted
build-users-group = privnix-test-bld
substituters =
require-sigs = true
`

// inputs writes the files the store tests add, beneath dir (readable by the
// test users).
func inputs(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{
		"hello.txt":           "hello\n",
		"tree/a":              "a file\n",
		"tree/bin/run":        "#!/bin/sh\necho run\n",
		"tree/sub/deep/empty": "",
		"tree/sub/ünïcode":    "name with unicode\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, "tree/bin/run"), 0o755)
	os.Symlink("bin/run", filepath.Join(dir, "tree/link"))
	os.Symlink("/nonexistent/target", filepath.Join(dir, "tree/dangling"))
	os.WriteFile(filepath.Join(dir, "expr.nix"), []byte(`
derivation { name = "privnix-test"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo hi > $out" ];
  src = ./hello.txt; quoted = "a \"b\" \\ c\nd\te"; }
`), 0o644)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return files
}

// storeScenario runs the same client commands against whichever daemon is
// serving s and returns their outputs, keyed by a step name.
func storeScenario(t *testing.T, s *testenv.Store, in string) map[string]string {
	t.Helper()
	out := map[string]string{}
	run := stepRunner(t, s, out)
	a := testenv.Alice
	file := run("add file", a, "nix-store", "--add", filepath.Join(in, "hello.txt"))
	tree := run("add tree", a, "nix-store", "--add", filepath.Join(in, "tree"))
	run("add-fixed sha256 flat", a, "nix-store", "--add-fixed", "sha256", filepath.Join(in, "hello.txt"))
	run("add-fixed sha1 flat", a, "nix-store", "--add-fixed", "sha1", filepath.Join(in, "hello.txt"))
	run("add-fixed sha512 recursive", a, "nix-store", "--add-fixed", "--recursive", "sha512", filepath.Join(in, "tree"))
	run("add-fixed sha256 recursive", a, "nix-store", "--add-fixed", "--recursive", "sha256", filepath.Join(in, "tree"))
	drv := run("instantiate", a, "nix-instantiate", filepath.Join(in, "expr.nix"))
	run("hash", a, "nix-store", "-q", "--hash", tree)
	run("size", a, "nix-store", "-q", "--size", tree)
	run("references", a, "nix-store", "-q", "--references", drv)
	run("referrers", a, "nix-store", "-q", "--referrers", file)
	run("requisites", a, "nix-store", "-q", "--requisites", drv)
	run("valid", a, "nix-store", "--check-validity", file, tree, drv)
	info := run("path-info", a, "nix", "--extra-experimental-features", "nix-command", "path-info", "--json", file, tree, drv)
	out["path-info"] = normalisePathInfo(t, info)
	run("path-info all", a, "nix", "--extra-experimental-features", "nix-command", "path-info", "--all")
	run("dump", a, "sh", "-c", "nix-store --dump "+tree+" | sha256sum")
	run("export", a, "sh", "-c", "nix-store --export "+file+" "+tree+" | sha256sum")
	run("store ls", a, "nix", "--extra-experimental-features", "nix-command", "store", "ls", "-R", "-l", tree)
	run("store cat", a, "nix", "--extra-experimental-features", "nix-command", "store", "cat", tree+"/a")
	run("deriver", a, "nix-store", "-q", "--deriver", file)
	// A binary cache of our own: nix copy --to writes what the daemon says.
	cache := filepath.Join(s.Root, "cache-"+strings.ReplaceAll(t.Name(), "/", "_"))
	os.RemoveAll(cache)
	os.MkdirAll(cache, 0o777)
	os.Chmod(cache, 0o777)
	run("copy to", testenv.Bob, "nix", "--extra-experimental-features", "nix-command", "copy", "--to", "file://"+cache, file, tree)
	out["cache narinfo"] = narinfos(t, cache)
	os.RemoveAll(cache)
	return out
}

// narinfos returns the cache's narinfo files, sorted, concatenated.
func narinfos(t *testing.T, cache string) string {
	names, err := filepath.Glob(filepath.Join(cache, "*.narinfo"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no narinfo in %s (%v)", cache, err)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		body, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(filepath.Base(n) + ":\n" + string(body))
	}
	return b.String()
}

// normalisePathInfo drops what legitimately differs between two daemons
// (registration time) from `nix path-info --json`.
func normalisePathInfo(t *testing.T, js string) string {
	var infos []map[string]any
	if err := json.Unmarshal([]byte(js), &infos); err != nil {
		t.Fatalf("path-info --json: %v\n%s", err, js)
	}
	for _, i := range infos {
		delete(i, "registrationTime")
	}
	sort.Slice(infos, func(a, b int) bool { return infos[a]["path"].(string) < infos[b]["path"].(string) })
	b, _ := json.MarshalIndent(infos, "", " ")
	return string(b)
}

// The same adds and queries through nix-daemon 2.8 and through privnixd, on
// the same store directory, give the same paths, hashes, sizes and graphs.
func TestStoreMatchesNixDaemon(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	inputs(t, in)

	nd := testenv.StartNixDaemon(t, s)
	want := storeScenario(t, s, in)
	nd.Stop(t)
	s.Reset(t)

	testenv.StartPrivnixd(t, s)
	got := storeScenario(t, s, in)
	for step, w := range want {
		if got[step] != w {
			t.Errorf("%s: privnixd gave\n%s\nnix-daemon gave\n%s", step, got[step], w)
		}
	}
}

// An untrusted user may add content-addressed paths, but not import a path
// without a signature (an export stream carries no content address): refused
// with nix-daemon's words, and the store is unchanged. A trusted user may.
func TestUntrustedImportRefused(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	inputs(t, in)
	d := testenv.StartPrivnixd(t, s)

	r := s.Run(t, testenv.Alice, nil, "nix-store", "--add", filepath.Join(in, "hello.txt"))
	if r.Err != nil {
		t.Fatalf("untrusted content-addressed add: %v %s", r.Err, r.Stderr)
	}
	p := strings.TrimSpace(r.Stdout)
	exp := s.Run(t, testenv.Alice, nil, "nix-store", "--export", p)
	if exp.Err != nil {
		t.Fatalf("export: %v %s", exp.Err, exp.Stderr)
	}
	d.Stop(t)
	s.Reset(t)
	testenv.StartPrivnixd(t, s)

	imp := s.Run(t, testenv.Alice, []byte(exp.Stdout), "nix-store", "--import")
	want := "cannot add path '" + p + "' because it lacks a valid signature"
	if imp.Err == nil || !strings.Contains(imp.Stderr, want) {
		t.Fatalf("untrusted import: err %v, stderr %q; want %q", imp.Err, imp.Stderr, want)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("after the refused import %s exists (err %v)", p, err)
	}
	if v := s.Run(t, testenv.Alice, nil, "nix-store", "--check-validity", p); v.Err == nil {
		t.Errorf("after the refused import %s is valid", p)
	}
	imp = s.Run(t, testenv.Bob, []byte(exp.Stdout), "nix-store", "--import")
	if imp.Err != nil || strings.TrimSpace(imp.Stdout) != p {
		t.Fatalf("trusted import: %v %q %s", imp.Err, imp.Stdout, imp.Stderr)
	}
}

// Eight clients adding the same file at once all succeed with the same path,
// and one intact copy is kept (path locks in the monitor).
func TestConcurrentSameAdd(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	inputs(t, in)
	testenv.StartPrivnixd(t, s)
	const n = 8
	paths := make(chan string, n)
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			r := s.Run(t, testenv.Alice, nil, "nix-store", "--add", filepath.Join(in, "tree"))
			if r.Err != nil {
				errs <- r.Stderr
				return
			}
			paths <- strings.TrimSpace(r.Stdout)
		}()
	}
	var got []string
	for i := 0; i < n; i++ {
		select {
		case p := <-paths:
			got = append(got, p)
		case e := <-errs:
			t.Errorf("a concurrent add failed: %s", e)
		}
	}
	for _, p := range got {
		if p != got[0] {
			t.Fatalf("concurrent adds gave %s and %s", got[0], p)
		}
	}
	if len(got) > 0 {
		if r := s.Run(t, testenv.Alice, nil, "nix-store", "--verify-path", got[0]); r.Err != nil {
			t.Errorf("verify-path: %v %s", r.Err, r.Stderr)
		}
	}
}

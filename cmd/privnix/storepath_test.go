package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"privnix/internal/narfs/narfstest"
)

// TestStorePathAgainstNixStore compares `privnix store-path` with the paths
// `nix-store --add-fixed [--recursive]` and `nix-store --add` create on a
// private store, for random files and random trees.
func TestStorePathAgainstNixStore(t *testing.T) {
	e := newHSEnv(t)
	files := e.writeRandomFiles(0, 3, 1000, 70000)
	var trees []string
	for seed := int64(1); seed <= 4; seed++ {
		tree := filepath.Join(e.tmp, fmt.Sprintf("tree-%d", seed))
		narfstest.GenTree(t, tree, seed, seed == 4)
		trees = append(trees, tree)
	}
	link := filepath.Join(e.tmp, "top-link")
	if err := os.Symlink("file-a", link); err != nil {
		t.Fatal(err)
	}
	checked := 0
	check := func(privnixArgs, nixArgs []string) {
		t.Helper()
		got := strings.TrimSpace(e.must("privnix", append([]string{"store-path"}, privnixArgs...)...))
		want := strings.TrimSpace(e.must("nix-store", nixArgs...))
		if got != want {
			t.Errorf("store-path %v = %s, nix-store %v made %s", privnixArgs, got, nixArgs, want)
		}
		if !strings.HasPrefix(got, e.storeDir+"/") {
			t.Errorf("store-path %v = %s, not in NIX_STORE_DIR %s", privnixArgs, got, e.storeDir)
		}
		checked++
	}
	for _, algo := range []string{"sha1", "sha256", "sha512"} {
		for _, f := range files {
			check([]string{"--fixed", "--hash-algo", algo, f}, []string{"--add-fixed", algo, f})
			check([]string{"--fixed", "--recursive", "--hash-algo", algo, f}, []string{"--add-fixed", "--recursive", algo, f})
		}
		for _, tree := range append(trees, link) {
			check([]string{"--fixed", "--recursive", "--hash-algo", algo, tree}, []string{"--add-fixed", "--recursive", algo, tree})
		}
	}
	for _, p := range append(append(files, trees...), link) {
		check([]string{"--add", p}, []string{"--add", p})
	}
	if checked != 3*(2*len(files)+len(trees)+1)+len(files)+len(trees)+1 {
		t.Errorf("checked %d paths", checked)
	}
}

// TestStorePathStoreDir checks that --store-dir and NIX_STORE_DIR choose the directory.
func TestStorePathStoreDir(t *testing.T) {
	e := newHSEnv(t)
	f := e.writeRandomFiles(5)[0]
	got := strings.TrimSpace(e.must("privnix", "store-path", "--add", "--store-dir", "/other/store", f))
	if !strings.HasPrefix(got, "/other/store/") || !strings.HasSuffix(got, "-"+filepath.Base(f)) {
		t.Errorf("--store-dir /other/store gave %s", got)
	}
	named := strings.TrimSpace(e.must("privnix", "store-path", "--add", "--name", "renamed", f))
	if !strings.HasPrefix(named, e.storeDir+"/") || !strings.HasSuffix(named, "-renamed") {
		t.Errorf("--name renamed gave %s", named)
	}
}

// TestStorePathRefuses checks bad invocations fail with a message on stderr.
func TestStorePathRefuses(t *testing.T) {
	e := newHSEnv(t)
	f := e.writeRandomFiles(5)[0]
	dot := filepath.Join(e.tmp, ".hidden")
	os.WriteFile(dot, nil, 0o644)
	space := filepath.Join(e.tmp, "with space")
	os.WriteFile(space, nil, 0o644)
	fifo := filepath.Join(e.tmp, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := [][]string{
		{"store-path", f},
		{"store-path", "--fixed", "--add", f},
		{"store-path", "--add", "--recursive", f},
		{"store-path", "--fixed", "--hash-algo", "sha3", f},
		{"store-path", "--add", filepath.Join(e.tmp, "missing")},
		{"store-path", "--add", dot},
		{"store-path", "--add", space},
		{"store-path", "--add", "--name", "a/b", f},
		{"store-path", "--add", "--store-dir", "relative/store", f},
		{"store-path", "--add", "--store-dir", "/nix/store/", f},
		{"store-path", "--add", fifo},
		{"store-path", "--fixed", "--hash-algo", "sha256", e.tmp},
	}
	for _, args := range tests {
		e.refuse("privnix", args...)
	}
}

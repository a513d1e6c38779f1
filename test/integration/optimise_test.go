package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"privnix/internal/testenv"
)

// optimiseInputs: identical files in several shapes (top-level file, inside
// directories, executable or not, a symlink twice) and unique ones.
func optimiseInputs(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"same.txt": "the same bytes\n", "one/a": "the same bytes\n", "one/b": "unique to one\n",
		"two/a": "the same bytes\n", "two/sub/c": "the same bytes\n", "two/exe": "#!/bin/sh\n",
		"three/exe": "#!/bin/sh\n", "lone.txt": "alone\n",
	}
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "exe") && strings.HasPrefix(name, "two") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("a", filepath.Join(dir, "one", "ln"))
	os.Symlink("a", filepath.Join(dir, "two", "ln"))
}

// linkMap describes how the store's files share inodes with .links: each
// non-directory (path relative to the store, hash parts kept) with the
// .links entry it is linked to ("-" if none), and each entry's link count.
func linkMap(t *testing.T, store string) string {
	t.Helper()
	byIno := map[uint64]string{}
	links, _ := os.ReadDir(filepath.Join(store, ".links"))
	var out []string
	for _, e := range links {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(store, ".links", e.Name()), &st); err != nil {
			t.Fatal(err)
		}
		byIno[st.Ino] = e.Name()
		out = append(out, fmt.Sprintf(".links/%s nlink=%d", e.Name(), st.Nlink))
	}
	ents, _ := os.ReadDir(store)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		filepath.Walk(filepath.Join(store, e.Name()), func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(store, p)
			link := byIno[fi.Sys().(*syscall.Stat_t).Ino]
			if link == "" {
				link = "-"
			}
			out = append(out, rel+" -> "+link)
			return nil
		})
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// optimiseScenario adds the inputs, optimises, checks the store, deletes
// and collects, against whichever daemon serves s.
func optimiseScenario(t *testing.T, s *testenv.Store, in string) map[string]string {
	t.Helper()
	out := map[string]string{}
	run := func(step, user string, args ...string) string {
		t.Helper()
		r := s.Run(t, user, nil, "nix-store", args...)
		// nix-daemon deletes in a shuffled order: the lines are sorted.
		out[step] = fmt.Sprintf("failed=%v\n%s\n%s", r.Err != nil, strings.TrimSpace(r.Stdout), sortedLines(verifyLines(r.Stderr)))
		return strings.TrimSpace(r.Stdout)
	}
	a := testenv.Alice
	var paths []string
	for _, f := range []string{"same.txt", "one", "two", "three", "lone.txt"} {
		paths = append(paths, run("add "+f, a, "--add", filepath.Join(in, f)))
	}
	out["before"] = linkMap(t, s.StoreDir)
	run("optimise", a, "--optimise")
	out["after optimise"] = linkMap(t, s.StoreDir)
	run("optimise again", a, "--optimise")
	run("verify", a, "--verify", "--check-contents")
	// A damaged .links entry (the one lone.txt, linked nowhere else, has):
	// reported, then removed by a trusted repair.
	lone := filepath.Join(s.StoreDir, ".links", linkOf(t, paths[4]))
	tamper(t, lone, "not alone\n")
	run("verify bad link", a, "--verify", "--check-contents")
	run("repair bad link", testenv.Bob, "--verify", "--check-contents", "--repair")
	out["after repair"] = linkMap(t, s.StoreDir)
	run("delete two", a, "--delete", paths[2])
	out["after delete"] = linkMap(t, s.StoreDir)
	run("gc", a, "--gc")
	out["after gc"] = linkMap(t, s.StoreDir)
	return out
}

// nix-store --optimise through privnixd links the same files to the same
// .links entries as nix-daemon 2.8 (names: the nix32 SHA-256 of each file's
// NAR serialisation), says the same about what it freed, leaves a store that
// verifies, and the collector removes the links nothing uses any more.
func TestOptimiseMatchesNixDaemon(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	optimiseInputs(t, in)

	againstNixDaemon(t, s, in, optimiseScenario, func(want map[string]string) {
		if !strings.Contains(want["optimise"], "freed by hard-linking 4 files") || !strings.Contains(want["after optimise"], "nlink=5") {
			t.Fatalf("nix-daemon's optimise:\n%s\n%s", want["optimise"], want["after optimise"])
		}
	})
	st, err := os.Lstat(filepath.Join(s.StoreDir, ".links"))
	if err != nil || st.Mode().Perm()&0o022 != 0 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf(".links: %v %v", st, err)
	}
}

// linkOf is the name of the .links entry sharing the inode of the file p.
func linkOf(t *testing.T, p string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	links, _ := os.ReadDir(filepath.Join(filepath.Dir(p), ".links"))
	for _, e := range links {
		var ls syscall.Stat_t
		if syscall.Lstat(filepath.Join(filepath.Dir(p), ".links", e.Name()), &ls) == nil && ls.Ino == st.Ino {
			return e.Name()
		}
	}
	t.Fatalf("%s is not linked", p)
	return ""
}

// auto-optimise-store: every path is linked through .links as it is added,
// as nix-daemon 2.8 does on the same store contents.
func TestAutoOptimiseMatchesNixDaemon(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf+"auto-optimise-store = true\n")
	in := filepath.Join(s.Root, "in")
	optimiseInputs(t, in)
	scenario := func() string {
		for _, f := range []string{"same.txt", "one", "two", "three", "lone.txt"} {
			if r := s.Run(t, testenv.Alice, nil, "nix-store", "--add", filepath.Join(in, f)); r.Err != nil {
				t.Fatalf("add %s: %v %s", f, r.Err, r.Stderr)
			}
		}
		return linkMap(t, s.StoreDir)
	}
	nd := testenv.StartNixDaemon(t, s)
	want := scenario()
	nd.Stop(t)
	if !strings.Contains(want, "nlink=5") {
		t.Fatalf("nix-daemon did not link on add:\n%s", want)
	}
	s.Reset(t)
	testenv.StartPrivnixd(t, s)
	if got := scenario(); got != want {
		t.Errorf("privnixd linked\n%s\nnix-daemon linked\n%s", got, want)
	}
}

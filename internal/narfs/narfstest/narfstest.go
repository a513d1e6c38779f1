// Package narfstest generates random file trees for NAR tests.
package narfstest

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// oddNames are entry names that trip up naive implementations.
var oddNames = []string{
	"a", "b", "A", "Z", "..a", ".a", "a.", "...", "-", "--x", " space", "tab\tname",
	"new\nline", "ünïcödé", "日本語", "emoji-😀", "\x01ctl", "bad-utf8-\xff\xfe", "a:b",
	"back\\slash", "quote\"'", "*?[", "z" + strings.Repeat("n", 254),
}

// GenTree writes a random tree (seeded) at root, which must not exist.
// bigFile adds one file of a few MiB.
func GenTree(t testing.TB, root string, seed int64, bigFile bool) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	genDir(t, r, root, 0)
	// Always include the edge cases at the top.
	must(t, os.WriteFile(filepath.Join(root, "empty-file"), nil, 0o644))
	must(t, os.Mkdir(filepath.Join(root, "empty-dir"), 0o755))
	must(t, os.Symlink("/nonexistent/absolute", filepath.Join(root, "dangling-abs")))
	must(t, os.Symlink("../../../../etc/passwd", filepath.Join(root, "escaping-rel")))
	must(t, os.WriteFile(filepath.Join(root, "exec-only-user"), []byte("#!/bin/sh\n"), 0o700))
	must(t, os.WriteFile(filepath.Join(root, "exec-group-only"), []byte("not exec for nix"), 0o654))
	if bigFile {
		big := make([]byte, 3<<20+12345)
		r.Read(big)
		must(t, os.WriteFile(filepath.Join(root, "big"), big, 0o644))
	}
}

func genDir(t testing.TB, r *rand.Rand, dir string, depth int) {
	n := r.Intn(7)
	for i := 0; i < n; i++ {
		name := oddNames[r.Intn(len(oddNames))]
		if r.Intn(3) == 0 {
			name = fmt.Sprintf("%s%d", name[:min(len(name), 200)], r.Intn(100))
		}
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		switch k := r.Intn(10); {
		case k < 4:
			data := make([]byte, r.Intn(5000))
			r.Read(data)
			mode := os.FileMode(0o644)
			if r.Intn(3) == 0 {
				mode = 0o755
			}
			must(t, os.WriteFile(p, data, mode))
		case k < 6:
			targets := []string{"a", "../x", "/abs/target", "dangling", ".", "..", "ünï", strings.Repeat("t/", 100)}
			must(t, os.Symlink(targets[r.Intn(len(targets))], p))
		default:
			if depth >= 4 {
				continue
			}
			must(t, os.Mkdir(p, 0o755))
			genDir(t, r, p, depth+1)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Package deps checks what each privnix binary links: a forbidden package in
// the root monitor is a broken privilege boundary, and any change to a
// binary's dependencies must be reviewed (cmd/*/deps.txt is checked in).
package deps

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// forbidden lists, per binary, the packages it must never link.
var forbidden = map[string][]string{
	// The root monitor parses no untrusted bytes: no worker-protocol decoder,
	// no NAR reader, no ATerm parser, no child's code.
	"privnixd": {"privnix/frontend", "privnix/frontend/wire", "privnix/storeproc", "privnix/buildproc",
		"privnix/nix/narreader", "privnix/nix/drv/aterm", "privnix/internal/narfs", "privnix/internal/confine",
		// No binary-cache client: the fetcher parses cache text and undoes compression.
		// (klauspost/compress/zstd is linked through badger, for its own tables.)
		"privnix/fetcher", "privnix/nix/narinfofile", "github.com/ulikunitz/xz", "compress/bzip2"},
	// (net/http is linked into privnixd through badger's OpenTelemetry
	// dependency; privnixd opens no network socket of its own.)
	// The frontend talks to the monitor only: no database, no monitor code.
	"privnix-frontend": {"github.com/dgraph-io/badger/v4", "privnix/monitor", "privnix/internal/sys",
		"privnix/storeproc", "privnix/nix/narreader", "os/exec"},
	// The fetcher talks to caches and the monitor: no database, no monitor
	// code, no worker protocol, no NAR unpacking.
	"privnix-fetch": {"github.com/dgraph-io/badger/v4", "privnix/monitor", "privnix/frontend", "privnix/frontend/wire",
		"privnix/nix/narreader", "privnix/internal/narfs", "os/exec"},
	"privnix-storeproc": {"github.com/dgraph-io/badger/v4", "privnix/monitor", "privnix/frontend",
		"privnix/frontend/wire", "net/http", "os/exec"},
}

const update = "PRIVNIX_UPDATE_DEPS"

func TestBinaryDependencies(t *testing.T) {
	root := repoRoot(t)
	cmds, err := filepath.Glob(filepath.Join(root, "cmd", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range cmds {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			deps := listDeps(t, root, name)
			for _, bad := range forbidden[name] {
				for _, d := range deps {
					if d == bad {
						t.Errorf("%s links %s, which it must not", name, bad)
					}
				}
			}
			manifest := filepath.Join(dir, "deps.txt")
			got := strings.Join(deps, "\n") + "\n"
			if os.Getenv(update) != "" {
				if err := os.WriteFile(manifest, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(manifest)
			if err != nil {
				t.Fatalf("%v (create it with %s=1 go test ./test/deps, then review and commit it)", err, update)
			}
			if string(want) != got {
				t.Errorf("%s's dependencies changed: review `go list -deps ./cmd/%s`, then run %s=1 go test ./test/deps and commit cmd/%s/deps.txt\n%s",
					name, name, update, name, diff(string(want), got))
			}
		})
	}
}

// listDeps is `go list -deps` without the standard library's internals:
// module packages, third-party packages and the std packages that matter
// for review (net, os/exec...) are kept.
func listDeps(t *testing.T, root, name string) []string {
	cmd := exec.Command("go", "list", "-deps", "./cmd/"+name)
	cmd.Dir = root
	if name != "privnixd" && name != "privnix" {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/%s: %v", name, err)
	}
	var deps []string
	for _, p := range strings.Fields(string(out)) {
		if strings.Contains(p, "internal") && !strings.HasPrefix(p, "privnix/") {
			continue
		}
		if strings.HasPrefix(p, "vendor/") {
			continue
		}
		deps = append(deps, p)
	}
	return deps
}

func diff(want, got string) string {
	w, g := set(want), set(got)
	var b strings.Builder
	for p := range g {
		if !w[p] {
			b.WriteString("+ " + p + "\n")
		}
	}
	for p := range w {
		if !g[p] {
			b.WriteString("- " + p + "\n")
		}
	}
	return b.String()
}

func set(s string) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Fields(s) {
		m[l] = true
	}
	return m
}

func repoRoot(t *testing.T) string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = filepath.Dir(dir)
	}
}

// Package testvectors finds the Nix project's test vectors
// (../shared/vectors/nix beside the repository root, where CI puts them too),
// for tests.
package testvectors

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns ../shared/vectors/nix beside the directory holding go.mod.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "vectors", "nix")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

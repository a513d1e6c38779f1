package drv_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoParserLinked keeps the ATerm parser (and every other parser package)
// out of nix/drv, which the root monitor links: it must check derivations by
// printing, never by parsing (DESIGN.md).
func TestNoParserLinked(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "privnix/nix/drv").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	for _, dep := range deps {
		if dep == "privnix/nix/drv/aterm" || dep == "privnix/nix/narreader" || strings.HasPrefix(dep, "github.com/") {
			t.Errorf("nix/drv depends on %s", dep)
		}
	}
}

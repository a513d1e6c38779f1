package narfs

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWriterSideLinksNoReader checks that the packages the monitor may link
// to serialise trees do not depend on the NAR reader (DESIGN.md).
func TestWriterSideLinksNoReader(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list dependencies: %v", err)
	}
	for _, pkg := range []string{"privnix/nix/nar", "privnix/internal/narfs/dumpfs"} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 2 {
			t.Fatalf("go list -deps %s listed %v", pkg, deps)
		}
		for _, d := range deps {
			if d == "privnix/nix/narreader" {
				t.Errorf("%s depends on the NAR reader", pkg)
			}
		}
	}
}

package narfs

import (
	"bytes"
	"os/exec"
	"testing"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// nixTool returns the path of a nix-bin tool or fails the test.
func nixTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install Debian's nix-bin (Nix 2.8) to run the differential tests: %v", name, err)
	}
	return p
}

// nixDump runs nix-store --dump on path.
func nixDump(t testing.TB, path string) []byte {
	t.Helper()
	out, err := exec.Command(nixTool(t, "nix-store"), "--dump", path).Output()
	if err != nil {
		t.Fatalf("nix-store --dump %s: %v", path, err)
	}
	return out
}

// ourDump runs DumpPath on path.
func ourDump(t testing.TB, path string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := DumpPath(&buf, path); err != nil {
		t.Fatalf("DumpPath %s: %v", path, err)
	}
	return buf.Bytes()
}

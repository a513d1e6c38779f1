package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// Repair by substitution, as nix-daemon 2.8 does for trusted users: a valid
// path whose store copy was modified is fetched again from a signed cache
// the connection names (nix-store --verify --check-contents --repair, and
// nix-store -r --repair of the path itself); untrusted users are refused.
func TestRepairBySubstitutionMatchesNixDaemon(t *testing.T) {
	e := newSubstEnv(t, "")
	unsigned, _ := e.makeCache(t, "r", "")
	dir, out := e.makeCache(t, "r", "secret-key="+e.secret)
	url := "file://" + dir
	for _, d := range []string{dir, unsigned} {
		os.Chmod(filepath.Dir(d), 0o755) // the fetcher reads the cache as its own uid
	}
	sc := func(t *testing.T, s *testenv.Store, _ string) map[string]string {
		t.Helper()
		res := map[string]string{}
		step := func(name, user string, args ...string) {
			t.Helper()
			r := s.Run(t, user, nil, "nix-store", args...)
			res[name] = fmt.Sprintf("failed=%v\n%s", r.Err != nil, verifyLines(r.Stderr))
		}
		contents := func(name string) {
			b, err := os.ReadFile(out)
			res[name] = fmt.Sprintf("%q %v", b, err)
		}
		if r := s.Run(t, testenv.Bob, nil, "nix-store", "-r", out, "--option", "substituters", url); r.Err != nil {
			t.Fatalf("substituting %s: %v\n%s", out, r.Err, r.Stderr)
		}
		contents("contents before")
		tamper(t, out, "corrupted\n")
		step("repair untrusted", testenv.Alice, "--verify", "--check-contents", "--repair", "--option", "substituters", url)
		step("repair no substituter", testenv.Bob, "--verify", "--check-contents", "--repair")
		step("repair unsigned", testenv.Bob, "--verify", "--check-contents", "--repair", "--option", "substituters", "file://"+unsigned)
		step("repair", testenv.Bob, "--verify", "--check-contents", "--repair", "--option", "substituters", url)
		contents("contents after verify")
		step("check after verify", testenv.Alice, "--verify", "--check-contents")
		tamper(t, out, "corrupted again\n")
		step("realise repair untrusted", testenv.Alice, "-r", "--repair", out, "--option", "substituters", url)
		step("realise repair", testenv.Bob, "-r", "--repair", out, "--option", "substituters", url)
		contents("contents after realise")
		step("check after realise", testenv.Alice, "--verify", "--check-contents")
		// A vanished path with a valid referrer is fetched again too.
		top, _ := os.ReadFile(out)
		dep := strings.TrimSpace(string(top))
		removeStorePath(t, dep)
		step("repair vanished", testenv.Bob, "--verify", "--repair", "--option", "substituters", url)
		b, err := os.ReadFile(filepath.Join(dep, "file"))
		res["vanished contents"] = fmt.Sprintf("%q %v", b, err)
		step("check after vanished", testenv.Alice, "--verify", "--check-contents")
		return res
	}
	_, d := againstNixDaemon(t, e.s, "", sc, func(want map[string]string) {
		for step, w := range map[string]string{"repair": "copying path", "repair no substituter": "cannot repair path",
			"repair unsigned": "cannot repair path",
			"repair vanished": "copying path", "vanished contents": `"dep\n" <nil>`,
			"check after verify": "failed=false", "repair untrusted": "not privileged"} {
			if !strings.Contains(want[step], w) {
				t.Fatalf("nix-daemon's %s has no %q:\n%s", step, w, want[step])
			}
		}
		if want["contents after verify"] != want["contents before"] || want["contents after realise"] != want["contents before"] {
			t.Fatalf("nix-daemon did not restore %s: %v", out, want)
		}
	})
	defer d.Stop(t)
}

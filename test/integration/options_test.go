package integration

import (
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// SetOptions from an untrusted user: substituters the admin does not trust
// are ignored with nix-daemon's warning; a trusted user's are taken silently.
func TestUntrustedSubstituterWarning(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf+"trusted-substituters = https://trusted.example.org\n")
	ping := func(user, subst string) string {
		r := s.Run(t, user, nil, "nix", "--extra-experimental-features", "nix-command",
			"--option", "substituters", subst, "store", "ping")
		if r.Err != nil {
			t.Fatalf("nix store ping as %s: %v\n%s", user, r.Err, r.Stderr)
		}
		// The Version line names the daemon, and legitimately differs.
		var keep []string
		for _, l := range strings.Split(strings.TrimSpace(r.Stderr), "\n") {
			if !strings.HasPrefix(l, "Version: ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	scenario := func() []string {
		return []string{
			ping(testenv.Alice, "https://example.org"),
			ping(testenv.Alice, "https://trusted.example.org"),
			ping(testenv.Bob, "https://example.org"),
		}
	}
	nd := testenv.StartNixDaemon(t, s)
	want := scenario()
	nd.Stop(t)
	s.Reset(t)
	testenv.StartPrivnixd(t, s)
	got := scenario()
	if !strings.Contains(want[0], "ignoring untrusted substituter 'https://example.org'") {
		t.Fatalf("nix-daemon's warning was %q; the test's premise is wrong", want[0])
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("case %d: privnixd said %q, nix-daemon said %q", i, got[i], want[i])
		}
	}
}

package integration

import (
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// The nix.conf of the skeleton tests: alice and bob may connect, bob's
// trusted group is trusted, carol may not connect, the tests' own build users.
const skeletonConf = `
allowed-users = @privnix-test-users
trusted-users = root @privnix-test-trusted
build-users-group = privnix-test-bld
substituters =
`

func startSkeleton(t *testing.T) *testenv.Store {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, skeletonConf)
	testenv.StartPrivnixd(t, s)
	return s
}

// The real client completes the handshake: nix store ping succeeds.
func TestNixStorePing(t *testing.T) {
	s := startSkeleton(t)
	r := s.Run(t, testenv.Alice, nil, "nix", "--extra-experimental-features", "nix-command", "store", "ping")
	if r.Err != nil {
		t.Fatalf("nix store ping as %s: %v\nstdout: %s\nstderr: %s", testenv.Alice, r.Err, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout+r.Stderr, "Store URL: daemon") {
		t.Fatalf("nix store ping printed %q / %q, want the store URL", r.Stdout, r.Stderr)
	}
}

// A user who is not in allowed-users is told so by name, instead of the
// "Connection reset by peer" nix-daemon gives.
func TestRefusedUserSeesWhy(t *testing.T) {
	s := startSkeleton(t)
	r := s.Run(t, testenv.Carol, nil, "nix", "--extra-experimental-features", "nix-command", "store", "ping")
	if r.Err == nil {
		t.Fatalf("carol's nix store ping succeeded; want a refusal\n%s", r.Stdout)
	}
	want := "user 'privnix-carol' is not allowed to connect to the Nix daemon"
	if !strings.Contains(r.Stderr, want) || !strings.Contains(r.Stderr, "allowed-users") {
		t.Fatalf("carol's error = %q, want it to contain %q and name 'allowed-users'", r.Stderr, want)
	}
}

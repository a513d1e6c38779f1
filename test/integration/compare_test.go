package integration

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// scenario is a differential test's steps on a store, with the test's input
// files in in: each step's answer by the step's name.
type scenario func(t *testing.T, s *testenv.Store, in string) map[string]string

// againstNixDaemon runs sc under nix-daemon 2.8 on s, hands its answers to
// checkWant (which fails the test if nix-daemon did not show what the test is
// about; nil: no check), resets s, runs sc again under privnixd and reports
// each step whose answer differs. It returns nix-daemon's answers and
// privnixd.
func againstNixDaemon(t *testing.T, s *testenv.Store, in string, sc scenario, checkWant func(want map[string]string)) (map[string]string, *testenv.Daemon) {
	t.Helper()
	nd := testenv.StartNixDaemon(t, s)
	want := sc(t, s, in)
	nd.Stop(t)
	if checkWant != nil {
		checkWant(want)
	}
	s.Reset(t)
	d := testenv.StartPrivnixd(t, s)
	got := sc(t, s, in)
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s: privnixd gave\n%s\nnix-daemon gave\n%s", k, got[k], want[k])
		}
	}
	return want, d
}

// stepRunner returns a scenario's step: it runs a command as user, fails the
// test if the command fails, and records its trimmed stdout as the step's
// answer in out.
func stepRunner(t *testing.T, s *testenv.Store, out map[string]string) func(step, user string, args ...string) string {
	return func(step, user string, args ...string) string {
		t.Helper()
		r := s.Run(t, user, nil, args[0], args[1:]...)
		if r.Err != nil {
			t.Fatalf("%s: %s %v: %v\nstderr: %s", step, args[0], args[1:], r.Err, r.Stderr)
		}
		out[step] = strings.TrimSpace(r.Stdout)
		return out[step]
	}
}

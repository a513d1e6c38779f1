package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"privnix/frontend/wire"
	"privnix/internal/nixclient"
	"privnix/internal/testenv"
)

// substActivities runs BuildPaths(out) (what `nix-store -r` sends) on the
// daemon at the store's socket with substituters = url, and returns the
// activities and results it sent, as activityShape lines.
func substActivities(t *testing.T, s *testenv.Store, url, out string) []string {
	t.Helper()
	c, err := nixclient.Dial(s.SocketPath, wire.V(34))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetOptionsWith([]wire.Pair{{Key: "substituters", Value: url}}); err != nil {
		t.Fatal(err)
	}
	var msgs []wire.StderrMsg
	c.Record = func(m wire.StderrMsg) { msgs = append(msgs, m) }
	if err := c.BuildPaths([]string{out}); err != nil {
		t.Fatal(err)
	}
	return activityShape(t, msgs)
}

// activityShape describes each activity the messages start (level, type,
// text, fields, parent's type), with the result types sent on it and
// whether it was stopped; ids are the connection's own, so they are left
// out. Lines are sorted (paths are fetched in parallel). A stop or result
// for an unknown activity fails the test.
func activityShape(t *testing.T, msgs []wire.StderrMsg) []string {
	t.Helper()
	type act struct {
		a       wire.Activity
		results []string
		stopped bool
	}
	acts := map[uint64]*act{}
	var order []uint64
	for _, m := range msgs {
		switch m.Kind {
		case wire.StderrStartActivity:
			if acts[m.Activity.ID] != nil {
				t.Errorf("activity %d started twice", m.Activity.ID)
			}
			acts[m.Activity.ID] = &act{a: m.Activity}
			order = append(order, m.Activity.ID)
		case wire.StderrStopActivity:
			if a := acts[m.N]; a == nil || a.stopped {
				t.Errorf("stop of activity %d: not running", m.N)
			} else {
				a.stopped = true
			}
		case wire.StderrResult:
			if a := acts[m.N]; a == nil || a.stopped {
				t.Errorf("result %d on activity %d: not running", m.Type, m.N)
			} else if !slices.Contains(a.results, fmt.Sprint(m.Type)) {
				a.results = append(a.results, fmt.Sprint(m.Type))
			}
		}
	}
	var lines []string
	for _, id := range order {
		a := acts[id]
		parent := "-"
		if p := acts[a.a.Parent]; p != nil {
			parent = fmt.Sprint(p.a.Type)
		}
		var fs []string
		for _, f := range a.a.Fields {
			if f.IsString {
				fs = append(fs, fmt.Sprintf("%q", f.Str))
			} else {
				fs = append(fs, fmt.Sprint(f.Int))
			}
		}
		slices.Sort(a.results)
		lines = append(lines, fmt.Sprintf("level %d type %d %q [%s] parent %s results [%s] stopped %v",
			a.a.Level, a.a.Type, a.a.Text, strings.Join(fs, " "), parent, strings.Join(a.results, " "), a.stopped))
	}
	slices.Sort(lines)
	return lines
}

// A 2-path substitution from a file:// cache shows the client the same
// activities on both daemons.
func TestSubstituteActivities(t *testing.T) {
	e := newSubstEnv(t, "")
	dir, out := e.makeCache(t, "act", "secret-key="+e.secret)
	// The fetcher (an unprivileged uid) reads the cache: a copy where it can.
	cache := filepath.Join(e.s.Root, "act-cache")
	rootRun(t, nil, "cp", "-a", dir, cache)
	url := "file://" + cache
	nd := testenv.StartNixDaemon(t, e.s)
	want := copyActivities(substActivities(t, e.s, url, out))
	nd.Stop(t)
	e.s.Reset(t)
	if len(want) != 4 {
		t.Fatalf("nix-daemon's Substitute and CopyPath activities for 2 paths:\n%s", strings.Join(want, "\n"))
	}
	d := testenv.StartPrivnixd(t, e.s)
	defer d.Stop(t)
	got := copyActivities(substActivities(t, e.s, url, out))
	if !slices.Equal(got, want) {
		t.Errorf("privnixd's substitution activities:\n%s\nnix-daemon's:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// copyActivities keeps the Substitute (108) and CopyPath (100) activities.
func copyActivities(lines []string) []string {
	var keep []string
	for _, l := range lines {
		if strings.Contains(l, " type 108 ") || strings.Contains(l, " type 100 ") {
			keep = append(keep, l)
		}
	}
	return keep
}

package admin

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func loadFor(t *testing.T, s *testStore) *Plan {
	t.Helper()
	return mustPlan(t, s, SetupOptions{BuildUsers: 2})
}

// A fresh private store: setup makes the group, the users and every
// directory as asked, and a second run has nothing to do.
func TestSetupFreshAndIdempotent(t *testing.T) {
	requireRoot(t)
	g, sg := uniqueName("pnxs"), uniqueName("pnxk")
	s := newTestStore(t, "build-users-group = "+g+"\n", "")
	removeAfter(t, buildUserNames(g, 3), g, sg)
	s.setup(t, SetupOptions{BuildUsers: 3, SocketGroup: sg})

	acc := newAccounts()
	gid, members, ok, err := acc.group(g)
	if err != nil || !ok {
		t.Fatalf("group %s after setup: ok %v, %v", g, ok, err)
	}
	if !slices.Equal(members, buildUserNames(g, 3)) {
		t.Errorf("members of %s = %v, want %v", g, members, buildUserNames(g, 3))
	}
	for _, name := range buildUserNames(g, 3) {
		u, ok, err := acc.user(name)
		if err != nil || !ok {
			t.Fatalf("user %s: ok %v, %v", name, ok, err)
		}
		if u.GID != gid || !slices.Equal(u.Groups, []string{g}) || !isNologin(u.Shell) || u.Home != "/var/empty" || u.UID == 0 {
			t.Errorf("user %s = %+v, want primary group %s only, nologin, /var/empty", name, u, g)
		}
	}
	sgid, _, _, _ := acc.group(sg)
	for _, tc := range []struct {
		path string
		gid  uint32
		mode os.FileMode
	}{
		{s.Paths.StoreDir, 0, 0o755},
		{s.Paths.StateDir, 0, 0o755},
		{filepath.Join(s.Paths.StateDir, "db"), 0, 0o755},
		{filepath.Join(s.Paths.StateDir, "gcroots", "per-user"), 0, 0o755},
		{filepath.Join(s.Paths.StateDir, "profiles", "per-user"), 0, 0o755},
		{filepath.Join(s.Paths.StateDir, "temproots"), 0, 0o755},
		{s.Paths.SocketDir(), sgid, 0o750},
		{filepath.Join(s.Paths.LogDir, "drvs"), 0, 0o755},
	} {
		st, err := stat(tc.path)
		if err != nil || !st.Dir || st.UID != 0 || st.GID != tc.gid || st.Mode != tc.mode {
			t.Errorf("%s: %+v (%v), want a directory root:%d %s", tc.path, st, err, tc.gid, octal(tc.mode))
		}
	}
	if l, err := os.Readlink(filepath.Join(s.Paths.StateDir, "gcroots", "profiles")); err != nil || l != filepath.Join(s.Paths.StateDir, "profiles") {
		t.Errorf("gcroots/profiles -> %q, %v", l, err)
	}
	// Again, with and without --socket-group: nothing to do, and the socket
	// directory keeps its group.
	for _, sock := range []string{sg, ""} {
		pl := mustPlan(t, s, SetupOptions{BuildUsers: 3, SocketGroup: sock})
		if len(pl.Actions) != 0 || len(pl.Problems) != 0 {
			t.Errorf("second setup (socket group %q) plans %v, problems %v; want nothing", sock, pl.Actions, pl.Problems)
		}
	}
}

func mustPlan(t *testing.T, s *testStore, o SetupOptions) *Plan {
	t.Helper()
	st, _, _, err := LoadSettings(s.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := PlanSetup(st, s.Paths, o)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// --dry-run prints the exact commands and changes nothing.
func TestSetupDryRun(t *testing.T) {
	requireRoot(t)
	g := uniqueName("pnxd")
	s := newTestStore(t, "build-users-group = "+g+"\n", "")
	removeAfter(t, buildUserNames(g, 2), g)
	pl := loadFor(t, s)
	var out strings.Builder
	pl.Print(&out)
	for _, want := range []string{
		"groupadd --system " + g + "\t",
		"useradd --system --no-create-home --home-dir /var/empty --shell " + nologin() + " --gid " + g + " --groups " + g +
			" --no-user-group --comment 'Nix build user 2' " + g + "2\t",
		"mkdir -p -m 0755 " + s.Paths.StoreDir + "\t",
		"ln -s " + filepath.Join(s.Paths.StateDir, "profiles") + " " + filepath.Join(s.Paths.StateDir, "gcroots", "profiles"),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out.String())
		}
	}
	if _, _, ok, _ := newAccounts().group(g); ok {
		t.Errorf("dry run created group %s", g)
	}
	if st, _ := stat(s.Paths.StoreDir); st.Exists {
		t.Errorf("dry run created %s", s.Paths.StoreDir)
	}
}

// Existing accounts that are wrong are reported, and fixed only with
// --fix-existing; afterwards setup has nothing left to do.
func TestSetupExistingAccounts(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, g string)
		want    string // in the problem without --fix-existing
		fix     string // the command with --fix-existing
	}{
		{"build user in another group", func(t *testing.T, g string) {
			other := uniqueName("pnxo")
			newGroup(t, other)
			newUser(t, g+"1", g, "/usr/sbin/nologin", g, other)
		}, "it is also in", "usermod --gid"},
		{"build user with a login shell", func(t *testing.T, g string) {
			newUser(t, g+"1", g, "/bin/bash", g)
		}, "its shell /bin/bash allows a login", "usermod --gid"},
		{"build user not listed in the group", func(t *testing.T, g string) {
			newUser(t, g+"1", g, "/usr/sbin/nologin")
		}, "not listed as a member", "usermod --gid"},
		{"a person in the build group", func(t *testing.T, g string) {
			p := uniqueName("pnxp")
			newGroup(t, p)
			newUser(t, p, p, "/bin/bash", g)
		}, "is not a build user", "gpasswd --delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := uniqueName("pnxe")
			s := newTestStore(t, "build-users-group = "+g+"\n", "")
			removeAfter(t, buildUserNames(g, 2), g)
			newGroup(t, g)
			tc.breakIt(t, g)
			pl := loadFor(t, s)
			if !slices.ContainsFunc(pl.Problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Fatalf("problems %q, want one containing %q", pl.Problems, tc.want)
			}
			if slices.ContainsFunc(pl.Actions, func(a Action) bool { return strings.HasPrefix(a.String(), tc.fix) }) {
				t.Fatalf("without --fix-existing the plan changes an existing account: %v", pl.Actions)
			}
			fixed := s.setup(t, SetupOptions{BuildUsers: 2, FixExisting: true})
			if !slices.ContainsFunc(fixed.Actions, func(a Action) bool { return strings.HasPrefix(a.String(), tc.fix) }) {
				t.Fatalf("with --fix-existing the plan %v has no %q", fixed.Actions, tc.fix)
			}
			if again := loadFor(t, s); len(again.Actions) != 0 || len(again.Problems) != 0 {
				t.Fatalf("after the fix setup still plans %v, problems %q", again.Actions, again.Problems)
			}
		})
	}
}

// Directories with the wrong owner or mode (Nix's own group-writable store
// among them) are put right.
func TestSetupFixesDirectories(t *testing.T) {
	requireRoot(t)
	g := uniqueName("pnxf")
	removeAfter(t, buildUserNames(g, 2), g)
	s := newTestStore(t, "build-users-group = "+g+"\n", "")
	s.setup(t, SetupOptions{BuildUsers: 2})
	gid, _, _, _ := newAccounts().group(g)
	for _, tc := range []struct {
		name string
		path string
		uid  int
		gid  int
		mode os.FileMode
		want []string
	}{
		{"Nix's store layout", s.Paths.StoreDir, 0, int(gid), 0o1775, []string{"chown root:root", "chmod 0755"}},
		{"state dir owned by a build user's gid", filepath.Join(s.Paths.StateDir, "temproots"), 0, int(gid), 0o755, []string{"chown root:root"}},
		{"world-writable log dir", s.Paths.LogDir, 0, 0, 0o777, []string{"chmod 0755"}},
		{"db owned by nobody", filepath.Join(s.Paths.StateDir, "db"), 65534, 0, 0o755, []string{"chown root:root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Chown(tc.path, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			if err := exec.Command("chmod", octal(tc.mode), tc.path).Run(); err != nil {
				t.Fatal(err)
			}
			pl := loadFor(t, s)
			if nixLayout := tc.mode&0o020 != 0 && tc.path == s.Paths.StoreDir; nixLayout !=
				slices.ContainsFunc(pl.Notes, func(n string) bool { return strings.Contains(n, "nix-daemon cannot build") }) {
				t.Errorf("notes %q: the note about nix-daemon must appear exactly when the store was group-writable", pl.Notes)
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(pl.Actions, func(a Action) bool { return a.String() == w+" "+tc.path }) {
					t.Errorf("plan %v lacks %q", pl.Actions, w+" "+tc.path)
				}
			}
			s.setup(t, SetupOptions{BuildUsers: 2})
			if again := loadFor(t, s); len(again.Actions) != 0 || len(again.Problems) != 0 {
				t.Errorf("after setup: %v", again.Actions)
			}
		})
	}
}

// A privnix id range that overlaps an existing user is reported.
func TestSetupChecksRanges(t *testing.T) {
	requireRoot(t)
	g, u := uniqueName("pnxr"), uniqueName("pnxu")
	newGroup(t, u)
	newUser(t, u, u, "/usr/sbin/nologin")
	acc, _, _ := newAccounts().user(u)
	s := newTestStore(t, "build-users-group = "+g+"\n",
		"privnix-frontend-uids = "+itoa(acc.UID)+"-"+itoa(acc.UID)+"\n")
	removeAfter(t, buildUserNames(g, 2), g)
	pl := loadFor(t, s)
	if !slices.ContainsFunc(pl.Problems, func(p string) bool {
		return strings.Contains(p, "privnix-frontend-uids") && strings.Contains(p, u)
	}) {
		t.Fatalf("problems %q: want privnix-frontend-uids overlapping %s", pl.Problems, u)
	}
}

// Setup refuses to work beneath a directory someone else can write, and
// says so; with max-jobs above the build users it notes the wait.
func TestSetupUnsafeParentAndNotes(t *testing.T) {
	requireRoot(t)
	g := uniqueName("pnxy")
	s := newTestStore(t, "build-users-group = "+g+"\nmax-jobs = 4\n", "")
	removeAfter(t, buildUserNames(g, 2), g)
	parent := filepath.Dir(s.Paths.StateDir) // <root>/var
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, parent, 65534, 65534)
	pl := loadFor(t, s)
	if !slices.ContainsFunc(pl.Problems, func(p string) bool {
		return strings.HasPrefix(p, parent+" is owned by uid 65534") && strings.Contains(p, "setup does not work beneath it")
	}) {
		t.Errorf("problems %q: want one about %s", pl.Problems, parent)
	}
	for _, a := range pl.Actions {
		if strings.HasPrefix(a.Cmd[len(a.Cmd)-1], parent+"/") {
			t.Errorf("plan works beneath %s: %s", parent, a)
		}
	}
	if !slices.ContainsFunc(pl.Notes, func(n string) bool { return strings.Contains(n, "max-jobs is 4 but there will be 2 build users") }) {
		t.Errorf("notes %q: want the max-jobs note", pl.Notes)
	}
}

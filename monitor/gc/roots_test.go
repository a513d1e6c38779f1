package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"privnix/nix/storepath"
)

const overflowGID = 65534

// homes makes a directory every user can traverse (t.TempDir's parents are
// root's, 0700) and in it a 0700 home owned by each named user.
func homes(t *testing.T, users ...string) (base string, uids map[string]uint32) {
	t.Helper()
	base, err := os.MkdirTemp("/tmp", "privnix-gc-homes-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	uids = map[string]uint32{}
	for _, u := range users {
		uid := lookupUID(t, u)
		uids[u] = uid
		h := filepath.Join(base, u)
		if err := os.Mkdir(h, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(h, int(uid), overflowGID); err != nil {
			t.Fatal(err)
		}
	}
	return base, uids
}

// userLink creates the symlink link → target owned by uid.
func userLink(t *testing.T, target, link string, uid uint32) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, int(uid), overflowGID); err != nil {
		t.Fatal(err)
	}
}

func rootsByLink(roots []Root) map[string]Root {
	m := map[string]Root{}
	for _, r := range roots {
		m[r.Link] = r
	}
	return m
}

func TestIndirectRootsResolvedAsOwner(t *testing.T) {
	s := newStore(t)
	ps := s.add([]pathSpec{{name: "alice-app"}, {name: "bob-app"}, {name: "tmp-app"}, {name: "root-app"}, {name: "junk"}}, nil)
	base, uids := homes(t, "privnix-alice", "privnix-bob")
	alice, bob := filepath.Join(base, "privnix-alice"), filepath.Join(base, "privnix-bob")
	auto := filepath.Join(s.stateDir, "gcroots", "auto")

	// nix-build's result links in 0700 homes, registered in gcroots/auto.
	userLink(t, s.storeDir.String(ps["alice-app"]), filepath.Join(alice, "result"), uids["privnix-alice"])
	userLink(t, s.storeDir.String(ps["bob-app"])+"/bin/x", filepath.Join(bob, "result"), uids["privnix-bob"])
	userLink(t, filepath.Join(alice, "result"), filepath.Join(auto, "a1"), 0)
	userLink(t, filepath.Join(bob, "result"), filepath.Join(auto, "b1"), 0)
	// In a sticky world-writable directory owned by root: the link's owner reads it.
	tmp := filepath.Join(base, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	userLink(t, s.storeDir.String(ps["tmp-app"]), filepath.Join(tmp, "result"), uids["privnix-alice"])
	userLink(t, filepath.Join(tmp, "result"), filepath.Join(auto, "t1"), 0)
	// Root's own link in a root-owned directory is read without a helper.
	rootDir := filepath.Join(base, "root")
	if err := os.Mkdir(rootDir, 0o700); err != nil {
		t.Fatal(err)
	}
	userLink(t, s.storeDir.String(ps["root-app"]), filepath.Join(rootDir, "result"), 0)
	userLink(t, filepath.Join(rootDir, "result"), filepath.Join(auto, "r1"), 0)
	// Stale: the user's link is gone.
	userLink(t, filepath.Join(alice, "gone"), filepath.Join(auto, "stale"), 0)

	scan, err := ScanRootsDir(context.Background(), s.stateDir, s.storeDir, ExecResolver{GID: overflowGID}.Resolve)
	if err != nil {
		t.Fatal(err)
	}
	got := rootsByLink(scan.Roots)
	for link, want := range map[string]storepath.Path{
		filepath.Join(alice, "result"):   ps["alice-app"],
		filepath.Join(bob, "result"):     ps["bob-app"],
		filepath.Join(tmp, "result"):     ps["tmp-app"],
		filepath.Join(rootDir, "result"): ps["root-app"],
	} {
		if r, ok := got[link]; !ok || r.Path != want || r.Kind != Indirect {
			t.Errorf("%s: %+v, want %s", link, r, want.Name())
		}
	}
	if len(scan.Roots) != 4 || len(scan.Unresolved) != 0 {
		t.Errorf("roots %+v, unresolved %+v", scan.Roots, scan.Unresolved)
	}
	if !slices.Equal(scan.Stale, []string{filepath.Join(auto, "stale")}) {
		t.Errorf("stale %v", scan.Stale)
	}
	if err := RemoveStale(s.stateDir, scan.Stale); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(auto, "stale")); !os.IsNotExist(err) {
		t.Errorf("stale link not removed: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(auto, "a1")); err != nil {
		t.Errorf("live link removed: %v", err)
	}

	res, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead, Roots: Paths(scan.Roots)}, newDeps(s))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Paths, []string{ps["junk"].Base()}) {
		t.Errorf("deleted %v, want only junk", res.Paths)
	}
	s.checkConsistent()
}

// The helper really runs as the uid: alice cannot read a link in bob's 0700 home.
func TestExecResolverRunsAsUID(t *testing.T) {
	base, uids := homes(t, "privnix-alice", "privnix-bob")
	link := filepath.Join(base, "privnix-bob", "result")
	userLink(t, "/nix/store/x", link, uids["privnix-bob"])
	r := ExecResolver{GID: overflowGID}
	deadline := time.Now().Add(ResolveTimeout)
	if got, err := r.Resolve(uids["privnix-bob"], link, deadline); err != nil || got != "/nix/store/x" {
		t.Errorf("as bob: %q, %v", got, err)
	}
	if got, err := r.Resolve(uids["privnix-alice"], link, deadline); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("as alice: %q, %v", got, err)
	}
	if _, err := r.Resolve(0, link, deadline); !errors.Is(err, ErrResolveRoot) {
		t.Errorf("as root: %v", err)
	}
}

// A link that cannot be resolved in time is kept and protects nothing.
func TestIndirectRootTimeout(t *testing.T) {
	s := newStore(t)
	ps := s.add([]pathSpec{{name: "slow-app"}}, nil)
	base, uids := homes(t, "privnix-alice")
	alice := filepath.Join(base, "privnix-alice")
	userLink(t, s.storeDir.String(ps["slow-app"]), filepath.Join(alice, "result"), uids["privnix-alice"])
	auto := filepath.Join(s.stateDir, "gcroots", "auto", "slow")
	userLink(t, filepath.Join(alice, "result"), auto, 0)
	// A "readlink" that hangs, as on a stuck network home.
	hang := filepath.Join(base, "hang")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	scan, err := ScanRootsDir(ctx, s.stateDir, s.storeDir, ExecResolver{Readlink: hang, GID: overflowGID}.Resolve)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("took %v", el)
	}
	if len(scan.Roots) != 0 || len(scan.Unresolved) != 1 || !errors.Is(scan.Unresolved[0].Err, ErrTimeout) || scan.Unresolved[0].Link != auto {
		t.Fatalf("roots %+v unresolved %+v", scan.Roots, scan.Unresolved)
	}
	if len(scan.Stale) != 0 {
		t.Errorf("an unresolved link is reported stale: %v", scan.Stale)
	}
	if _, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead, Roots: Paths(scan.Roots)}, newDeps(s)); err != nil {
		t.Fatal(err)
	}
	if s.valid(ps["slow-app"]) {
		t.Error("an unresolved root protected its path")
	}
	if _, err := os.Lstat(auto); err != nil {
		t.Errorf("the unresolved link was not kept: %v", err)
	}
}

// Links a user plants in their per-user directory are never followed as
// root: targets outside the store that are not symlinks name nothing, a
// directory replaced by a symlink is not walked, and a path through a
// user's symlinked directory is not resolved.
func TestPlantedLinksNotFollowed(t *testing.T) {
	s := newStore(t)
	ps := s.add([]pathSpec{{name: "kept"}, {name: "via-symlinked-dir"}, {name: "in-etc"}}, nil)
	base, uids := homes(t, "privnix-alice")
	aliceUID := uids["privnix-alice"]
	alice := filepath.Join(base, "privnix-alice")
	per := filepath.Join(s.stateDir, "gcroots", "per-user", "privnix-alice")
	if err := os.Mkdir(per, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(per, int(aliceUID), overflowGID); err != nil {
		t.Fatal(err)
	}
	// A legitimate per-user root.
	userLink(t, s.storeDir.String(ps["kept"]), filepath.Join(per, "ok"), aliceUID)
	// Links to root's files and directories.
	userLink(t, "/etc", filepath.Join(per, "etc"), aliceUID)
	userLink(t, "/etc/passwd", filepath.Join(per, "passwd"), aliceUID)
	userLink(t, "/proc/self/root/etc", filepath.Join(per, "magic"), aliceUID)
	// A directory of alice's holding a link into the store, reached through
	// a symlink she controls: not resolved.
	real := filepath.Join(alice, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	userLink(t, s.storeDir.String(ps["via-symlinked-dir"]), filepath.Join(real, "result"), aliceUID)
	userLink(t, real, filepath.Join(alice, "sub"), aliceUID)
	userLink(t, filepath.Join(alice, "sub", "result"), filepath.Join(per, "through"), aliceUID)
	// A symlink in place of a directory inside gcroots: read as a link, never walked.
	etcRoot := filepath.Join(s.root, "etc-like")
	if err := os.Mkdir(etcRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.storeDir.String(ps["in-etc"]), filepath.Join(etcRoot, "hidden-root")); err != nil {
		t.Fatal(err)
	}
	userLink(t, etcRoot, filepath.Join(per, "dir"), aliceUID)

	scan, err := ScanRootsDir(context.Background(), s.stateDir, s.storeDir, ExecResolver{GID: overflowGID}.Resolve)
	if err != nil {
		t.Fatal(err)
	}
	if len(scan.Roots) != 1 || scan.Roots[0].Path != ps["kept"] || scan.Roots[0].Kind != Perm {
		t.Errorf("roots %+v", scan.Roots)
	}
	var unresolved []string
	for _, u := range scan.Unresolved {
		unresolved = append(unresolved, filepath.Base(u.Link))
	}
	slices.Sort(unresolved)
	if !slices.Equal(unresolved, []string{"magic", "through"}) {
		t.Errorf("unresolved %+v", scan.Unresolved)
	}
	if len(scan.Stale) != 0 {
		t.Errorf("stale %v", scan.Stale)
	}
}

// A root whose link names a store path that is not valid protects nothing,
// and a target like <store>/../x names no store path.
func TestDanglingDirectRoots(t *testing.T) {
	s := newStore(t)
	ps := s.add([]pathSpec{{name: "x"}}, nil)
	gc := filepath.Join(s.stateDir, "gcroots")
	if err := os.Symlink(s.storeDir.String(mkPath(t, "never-added")), filepath.Join(gc, "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(string(s.storeDir)+"/../state", filepath.Join(gc, "dotdot")); err != nil {
		t.Fatal(err)
	}
	scan, err := ScanRootsDir(context.Background(), s.stateDir, s.storeDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(scan.Roots) != 1 || len(scan.Skipped) != 1 || !strings.Contains(scan.Skipped[0], "dotdot") {
		t.Errorf("roots %+v skipped %v", scan.Roots, scan.Skipped)
	}
	if _, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead, Roots: Paths(scan.Roots)}, newDeps(s)); err != nil {
		t.Fatal(err)
	}
	if s.valid(ps["x"]) {
		t.Error("x kept")
	}
}

// startProc starts cmd and kills it when the test ends.
func startProc(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

func TestRuntimeRoots(t *testing.T) {
	s := newStore(t)
	ps := s.add([]pathSpec{{name: "coreutils"}, {name: "cwd-dir"}, {name: "env-path"}, {name: "open-file"}, {name: "unused"}}, nil)
	// exe: a sleep binary inside a store path.
	bin := filepath.Join(s.storeDir.String(ps["coreutils"]), "sleep")
	data, err := os.ReadFile("/usr/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := startProc(t, exec.Command(bin, "30"))
	// cwd inside a store path.
	cwdCmd := exec.Command("/usr/bin/sleep", "30")
	cwdCmd.Dir = s.storeDir.String(ps["cwd-dir"])
	cwd := startProc(t, cwdCmd)
	// An environment variable naming a store path, in another user's process.
	alice := lookupUID(t, "privnix-alice")
	envCmd := exec.Command("/usr/bin/sleep", "30")
	envCmd.Dir = "/"
	envCmd.Env = []string{"FOO=" + s.storeDir.String(ps["env-path"]) + "/bin:/usr/bin"}
	envCmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: alice, Gid: overflowGID, Groups: []uint32{}}}
	env := startProc(t, envCmd)
	// An open file.
	f, err := os.Open(filepath.Join(s.storeDir.String(ps["open-file"]), "data"))
	if err != nil {
		t.Fatal(err)
	}
	fdCmd := exec.Command("/usr/bin/sleep", "30")
	fdCmd.ExtraFiles = []*os.File{f}
	fdp := startProc(t, fdCmd)
	f.Close()

	roots, stats, err := RuntimeRoots("", s.storeDir)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Processes < 4 {
		t.Errorf("stats %+v", stats)
	}
	got := map[string]storepath.Path{}
	for _, r := range roots {
		if r.Kind != Runtime {
			t.Errorf("kind %v", r.Kind)
		}
		got[r.Link] = r.Path
	}
	for link, want := range map[string]storepath.Path{
		fmt.Sprintf("/proc/%d/exe", exe):     ps["coreutils"],
		fmt.Sprintf("/proc/%d/maps", exe):    ps["coreutils"],
		fmt.Sprintf("/proc/%d/cwd", cwd):     ps["cwd-dir"],
		fmt.Sprintf("/proc/%d/environ", env): ps["env-path"],
		fmt.Sprintf("/proc/%d/fd/3", fdp):    ps["open-file"],
	} {
		if got[link] != want {
			t.Errorf("%s: %q, want %s", link, got[link].Base(), want.Name())
		}
	}
	for _, r := range roots {
		if r.Path == ps["unused"] {
			t.Errorf("unused found at %s", r.Link)
		}
	}
	res, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead, Roots: Paths(roots)}, newDeps(s))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Paths, []string{ps["unused"].Base()}) {
		t.Errorf("deleted %v", res.Paths)
	}
	s.checkConsistent()
}

// A user whose links all hang costs the collector one deadline, not one per link.
func TestTimeoutBudgetPerUser(t *testing.T) {
	s := newStore(t)
	base, uids := homes(t, "privnix-alice")
	alice := filepath.Join(base, "privnix-alice")
	for i := 0; i < 20; i++ {
		l := filepath.Join(alice, fmt.Sprintf("result-%d", i))
		userLink(t, s.storeDir.String(mkPath(t, "x")), l, uids["privnix-alice"])
		userLink(t, l, filepath.Join(s.stateDir, "gcroots", "auto", fmt.Sprintf("l%d", i)), 0)
	}
	hang := filepath.Join(base, "hang")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	scan, err := ScanRootsDir(context.Background(), s.stateDir, s.storeDir, ExecResolver{Readlink: hang, GID: overflowGID}.Resolve)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > ResolveTimeout*3/2 {
		t.Errorf("took %v", el)
	}
	timeouts, skipped := 0, 0
	for _, u := range scan.Unresolved {
		switch {
		case errors.Is(u.Err, ErrTimeout):
			timeouts++
		case errors.Is(u.Err, ErrTooManyTimeouts):
			skipped++
		}
	}
	if timeouts != MaxTimeoutsPerUID || skipped != 20-MaxTimeoutsPerUID || len(scan.Roots) != 0 {
		t.Errorf("%d timeouts, %d skipped, roots %v", timeouts, skipped, scan.Roots)
	}
}

// Profiles: <state>/profiles is walked too; gcroots/profiles → ../profiles
// (what nix-store --init creates) names no root by itself.
func TestProfiles(t *testing.T) {
	s := newStore(t)
	ps := s.add([]pathSpec{{name: "user-environment"}, {name: "old"}}, nil)
	if err := os.Symlink(filepath.Join(s.stateDir, "profiles"), filepath.Join(s.stateDir, "gcroots", "profiles")); err != nil {
		t.Fatal(err)
	}
	pu := filepath.Join(s.stateDir, "profiles", "per-user", "privnix-alice")
	if err := os.MkdirAll(pu, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.storeDir.String(ps["user-environment"]), filepath.Join(pu, "profile-1-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("profile-1-link", filepath.Join(pu, "profile")); err != nil {
		t.Fatal(err)
	}
	scan, err := ScanRootsDir(context.Background(), s.stateDir, s.storeDir, ExecResolver{GID: overflowGID}.Resolve)
	if err != nil {
		t.Fatal(err)
	}
	if len(scan.Roots) != 1 || scan.Roots[0].Link != filepath.Join(pu, "profile-1-link") || scan.Roots[0].Path != ps["user-environment"] {
		t.Errorf("roots %+v", scan.Roots)
	}
	if len(scan.Unresolved)+len(scan.Stale)+len(scan.Skipped) != 0 {
		t.Errorf("scan %+v", scan)
	}
}

// The helper's credentials: the uid, the overflow gid by default, no
// supplementary groups, cwd /, and only what the monitor passes as arguments.
func TestExecResolverCredentials(t *testing.T) {
	base, uids := homes(t, "privnix-alice")
	probe := filepath.Join(base, "probe")
	script := "#!/bin/sh\necho \"$(id -u) $(id -g) $(id -G) $(pwd) $# $1 $2 ${HOME:-nohome}\"\n"
	if err := os.WriteFile(probe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := ExecResolver{Readlink: probe}.Resolve(uids["privnix-alice"], "/some/link", time.Now().Add(ResolveTimeout))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d 65534 65534 / 3 -v -- nohome", uids["privnix-alice"])
	if got != want {
		t.Errorf("helper saw %q, want %q", got, want)
	}
}

// Gather: permanent and runtime roots of valid paths only; FindRoots' view.
func TestGather(t *testing.T) {
	s := newStore(t)
	ps := s.add([]pathSpec{{name: "perm"}, {name: "running"}, {name: "free"}}, nil)
	gc := filepath.Join(s.stateDir, "gcroots")
	if err := os.Symlink(s.storeDir.String(ps["perm"]), filepath.Join(gc, "perm")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.storeDir.String(mkPath(t, "invalid")), filepath.Join(gc, "invalid")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/sleep", "30")
	cmd.Dir = s.storeDir.String(ps["running"])
	pid := startProc(t, cmd)
	cfg := RootsConfig{StateDir: s.stateDir, StoreDir: s.storeDir, Resolve: ExecResolver{}.Resolve}
	roots, _, _, err := Gather(context.Background(), cfg, s.db)
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]string{}
	for _, r := range Shown(roots, false) {
		shown[r.Path.Name()] = r.Link
	}
	want := map[string]string{"perm": filepath.Join(gc, "perm"), "running": CensoredLink}
	if fmt.Sprint(shown) != fmt.Sprint(want) {
		t.Errorf("untrusted view %v, want %v", shown, want)
	}
	if r := rootsByLink(roots)[fmt.Sprintf("/proc/%d/cwd", pid)]; r.Path != ps["running"] {
		t.Errorf("trusted view lacks the cwd root: %+v", roots)
	}
	cfg.NoRuntime = true
	roots, _, _, err = Gather(context.Background(), cfg, s.db)
	if err != nil || len(roots) != 1 || roots[0].Path != ps["perm"] {
		t.Errorf("without runtime: %+v, %v", roots, err)
	}
}

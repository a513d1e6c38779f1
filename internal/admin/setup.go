package admin

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"privnix/internal/userdb"
	"privnix/nix/conf"
)

// SetupOptions are `privnix setup`'s flags.
type SetupOptions struct {
	BuildUsers  int    // how many build users <Group>1..N to have
	Group       string // the build users group; "" = build-users-group, else nixbld
	SocketGroup string // "" = socket directory root:root 0755; else root:<SocketGroup> 0750
	FixExisting bool   // also change existing users and groups that are wrong
}

// DefaultBuildUsers is the Nix installer's count.
const DefaultBuildUsers = 32

// Action is one command of a set-up plan.
type Action struct {
	Why string   // one line: what it is for
	Cmd []string // argv, run as is (no shell)
}

// String is the command as a shell would take it.
func (a Action) String() string {
	q := make([]string, len(a.Cmd))
	for i, s := range a.Cmd {
		q[i] = shellQuote(s)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+,%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Plan is what `privnix setup` will do: the commands to run, in order, and
// the problems it will not fix by itself (each with what to do).
type Plan struct {
	Group    string
	storeDir string
	fixing   map[string]bool // directories this plan chowns or chmods
	Actions  []Action
	Problems []string
	Notes    []string
}

func (pl *Plan) do(why string, cmd ...string) {
	pl.Actions = append(pl.Actions, Action{why, cmd})
	if cmd[0] == "chown" || cmd[0] == "chmod" {
		pl.fixing[cmd[len(cmd)-1]] = true
	}
}

// dirSpec is a directory the set-up wants, with its owner and mode.
type dirSpec struct {
	path  string
	group string // owner is always root; "" = root
	mode  os.FileMode
	why   string
}

// storeDirs lists the directories a privnix store needs, as the Nix manual's
// multi-user set-up and nix-store --init make them, except that the store is
// root's alone (DESIGN.md: the store never becomes writable by anyone else).
func storeDirs(p Paths, socketGroup string, socketMode os.FileMode) []dirSpec {
	st := p.StateDir
	return []dirSpec{
		{p.StoreDir, "", 0o755, "the store: root's alone, not group-writable (builds get a store view of their own)"},
		{st, "", 0o755, "the state directory"},
		{filepath.Join(st, "db"), "", 0o755, "databases (privnixd keeps its own in db/privnix, 0700)"},
		{filepath.Join(st, "gcroots"), "", 0o755, "GC roots"},
		{filepath.Join(st, "gcroots", "auto"), "", 0o755, "indirect GC roots"},
		{filepath.Join(st, "gcroots", "per-user"), "", 0o755, "per-user GC roots (privnixd makes one per user)"},
		{filepath.Join(st, "profiles"), "", 0o755, "profiles"},
		{filepath.Join(st, "profiles", "per-user"), "", 0o755, "per-user profiles (privnixd makes one per user)"},
		{filepath.Join(st, "temproots"), "", 0o755, "temporary roots of Nix tools"},
		{p.SocketDir(), socketGroup, socketMode, "the daemon socket's directory: its mode decides who can reach the socket"},
		{p.LogDir, "", 0o755, "build logs"},
		{filepath.Join(p.LogDir, "drvs"), "", 0o755, "build logs by derivation"},
	}
}

// buildGroup is the build users group setup and doctor work on.
func buildGroup(s *conf.Settings, flag string) string {
	switch {
	case flag != "":
		return flag
	case s.BuildUsersGroup != "":
		return s.BuildUsersGroup
	}
	return "nixbld"
}

// PlanSetup compares the system with what the set-up asks and returns the
// commands that close the gap. Running them and planning again gives an empty
// plan: setup is idempotent.
func PlanSetup(s *conf.Settings, p Paths, o SetupOptions) (*Plan, error) {
	if o.BuildUsers < 0 {
		return nil, fmt.Errorf("--build-users %d: must not be negative", o.BuildUsers)
	}
	pl := &Plan{Group: buildGroup(s, o.Group), storeDir: p.StoreDir, fixing: map[string]bool{}}
	if s.BuildUsersGroup != "" && o.Group != "" && o.Group != s.BuildUsersGroup {
		pl.Notes = append(pl.Notes, fmt.Sprintf("nix.conf says build-users-group = %s, but --group is %s: privnixd will use %s",
			s.BuildUsersGroup, o.Group, s.BuildUsersGroup))
	}
	if s.BuildUsersGroup != "" && uint64(o.BuildUsers) < uint64(s.MaxJobs) {
		pl.Notes = append(pl.Notes, fmt.Sprintf("max-jobs is %d but there will be %d build users: builds beyond that wait for a free one (--build-users %d)",
			s.MaxJobs, o.BuildUsers, s.MaxJobs))
	}
	acc := newAccounts()
	if err := pl.planGroup(acc, o); err != nil {
		return nil, err
	}
	if err := pl.planUsers(acc, o); err != nil {
		return nil, err
	}
	if err := pl.planDirs(acc, p, o); err != nil {
		return nil, err
	}
	pl.checkRanges(s)
	return pl, nil
}

func (pl *Plan) planGroup(acc accounts, o SetupOptions) error {
	g := pl.Group
	gid, members, ok, err := acc.group(g)
	if err != nil {
		return err
	}
	if !ok {
		pl.do("the build users group", "groupadd", "--system", g)
		return nil
	}
	for _, m := range members {
		if isBuildUserName(g, m) {
			continue
		}
		u, found, err := acc.user(m)
		if err != nil {
			return err
		}
		if found && u.GID == gid && isNologin(u.Shell) {
			continue // a build user by another name
		}
		if o.FixExisting {
			pl.do(fmt.Sprintf("'%s' is listed in the build users group but is not a build user", m), "gpasswd", "--delete", m, g)
		} else {
			pl.Problems = append(pl.Problems, fmt.Sprintf(
				"'%s' is a member of the build users group '%s' but is not a build user: builds may run as it, and it cannot use the daemon; fix: gpasswd --delete %s %s (or run setup with --fix-existing)", m, g, m, g))
		}
	}
	return nil
}

// isBuildUserName reports whether name is <group><number>.
func isBuildUserName(group, name string) bool {
	n, ok := strings.CutPrefix(name, group)
	if !ok || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 32)
	return err == nil
}

func (pl *Plan) planUsers(acc accounts, o SetupOptions) error {
	g := pl.Group
	gid, members, groupExists, err := acc.group(g)
	if err != nil {
		return err
	}
	shell := nologin()
	for i := 1; i <= o.BuildUsers; i++ {
		name := g + strconv.Itoa(i)
		u, found, err := acc.user(name)
		if err != nil {
			return err
		}
		if !found {
			pl.do(fmt.Sprintf("build user %d of %d", i, o.BuildUsers), "useradd", "--system", "--no-create-home",
				"--home-dir", "/var/empty", "--shell", shell, "--gid", g, "--groups", g, "--no-user-group",
				"--comment", "Nix build user "+strconv.Itoa(i), name)
			continue
		}
		var wrong []string
		if !groupExists || u.GID != gid {
			wrong = append(wrong, fmt.Sprintf("its primary group is '%s', not '%s'", u.PrimaryGroup, g))
		}
		if !slices.Contains(members, name) {
			wrong = append(wrong, fmt.Sprintf("it is not listed as a member of '%s'", g))
		}
		if other := otherGroups(u, g); len(other) > 0 {
			wrong = append(wrong, fmt.Sprintf("it is also in %s", strings.Join(other, ", ")))
		}
		if !isNologin(u.Shell) {
			wrong = append(wrong, fmt.Sprintf("its shell %s allows a login", u.Shell))
		}
		if !isNoHome(u.Home) {
			wrong = append(wrong, fmt.Sprintf("its home is %s", u.Home))
		}
		if u.UID == 0 {
			pl.Problems = append(pl.Problems, fmt.Sprintf("user '%s' has uid 0: it cannot be a build user; remove it from '%s' and pick another name", name, g))
			continue
		}
		if len(wrong) == 0 {
			continue
		}
		fix := []string{"usermod", "--gid", g, "--groups", g, "--shell", shell, "--home", "/var/empty", name}
		if o.FixExisting {
			pl.do(fmt.Sprintf("existing user '%s' made a build user: %s", name, strings.Join(wrong, "; ")), fix...)
		} else {
			pl.Problems = append(pl.Problems, fmt.Sprintf("user '%s' exists but is not a proper build user: %s; fix: %s (or run setup with --fix-existing)",
				name, strings.Join(wrong, "; "), Action{Cmd: fix}))
		}
	}
	return nil
}

// otherGroups lists u's groups besides group.
func otherGroups(u account, group string) []string {
	var out []string
	for _, x := range u.Groups {
		if x != group {
			out = append(out, x)
		}
	}
	return out
}

func (pl *Plan) planDirs(acc accounts, p Paths, o SetupOptions) error {
	sockGroup, sockMode := "", os.FileMode(0o755)
	if o.SocketGroup != "" {
		sockGroup, sockMode = o.SocketGroup, 0o750
		if _, _, ok, err := acc.group(o.SocketGroup); err != nil {
			return err
		} else if !ok {
			pl.do("the group whose members may reach the daemon socket", "groupadd", "--system", o.SocketGroup)
			pl.Notes = append(pl.Notes, fmt.Sprintf("group '%s' is new and has no members: add the users who may use Nix (usermod --append --groups %s USER)",
				o.SocketGroup, o.SocketGroup))
		}
	} else if st, err := stat(p.SocketDir()); err == nil && st.Exists && st.Dir && st.UID == 0 && st.GID != 0 && st.Mode == 0o750 {
		// A socket directory restricted to a group earlier stays so.
		name, _ := acc.db.GroupName(st.GID)
		sockGroup, sockMode = name, 0o750
		pl.Notes = append(pl.Notes, fmt.Sprintf("%s stays restricted to group '%s'; pass --socket-group to change the group", p.SocketDir(), name))
	}
	for _, d := range storeDirs(p, sockGroup, sockMode) {
		if err := pl.planDir(d); err != nil {
			return err
		}
	}
	// Nix's store init: profiles are GC roots through this link.
	link := filepath.Join(p.StateDir, "gcroots", "profiles")
	target := filepath.Join(p.StateDir, "profiles")
	st, err := stat(link)
	if err != nil {
		return err
	}
	unsafe, _, err := unsafeAncestor(link)
	if err != nil {
		return err
	}
	switch {
	case unsafe != "":
		// planDir already said so.
	case !st.Exists:
		pl.do("profiles are GC roots", "ln", "-s", target, link)
	case !st.Symlink:
		pl.Problems = append(pl.Problems, fmt.Sprintf("%s is not a symlink to %s: profiles are not GC roots", link, target))
	default:
		if t, err := os.Readlink(link); err != nil || t != target {
			pl.Problems = append(pl.Problems, fmt.Sprintf("%s points to %s, not %s", link, t, target))
		}
	}
	return nil
}

func (pl *Plan) planDir(d dirSpec) error {
	// Beneath a directory someone else can write, a path checked now could be a
	// symlink by the time chown runs: touch nothing there.
	if dir, ast, err := unsafeAncestor(d.path); err != nil {
		return err
	} else if dir != "" && pl.fixing[dir] {
		pl.Notes = append(pl.Notes, fmt.Sprintf("%s is fixed first: run setup again for %s", dir, d.path))
		return nil
	} else if dir != "" {
		pl.Problems = append(pl.Problems, fmt.Sprintf("%s is owned by uid %d with mode %s: it can be changed by someone other than root, so setup does not work beneath it (%s); fix: chown root %s && chmod go-w %s",
			dir, ast.UID, octal(ast.Mode), d.path, dir, dir))
		return nil
	}
	st, err := stat(d.path)
	if err != nil {
		return err
	}
	owner := "root:" + cmp(d.group, "root")
	switch {
	case !st.Exists:
		pl.do(d.why, "mkdir", "-p", "-m", octal(d.mode), d.path)
		if d.group != "" {
			pl.do(d.why, "chown", owner, d.path)
		}
		return nil
	case st.Symlink:
		pl.Problems = append(pl.Problems, fmt.Sprintf("%s is a symlink: privnix does not follow symlinks here; replace it with a directory", d.path))
		return nil
	case !st.Dir:
		pl.Problems = append(pl.Problems, fmt.Sprintf("%s exists and is not a directory", d.path))
		return nil
	}
	wantGID := uint32(0)
	if d.group != "" {
		gid, err := userdb.New(userdb.Options{}).LookupGroup(d.group)
		if err != nil {
			gid = ^uint32(0) // the group is created by this plan: chown is needed
		}
		wantGID = gid
	}
	if st.UID != 0 || st.GID != wantGID {
		pl.do(d.why, "chown", owner, d.path)
	}
	if d.path == pl.storeDir && st.Mode&0o020 != 0 {
		pl.Notes = append(pl.Notes, fmt.Sprintf("%s was group-writable, as Nix makes it for its build users: nix-daemon cannot build once it is 0755, "+
			"so stop it for good (systemctl disable --now nix-daemon.socket nix-daemon.service) and use privnixd", d.path))
	}
	if st.Mode != d.mode {
		pl.do(d.why, "chmod", octal(d.mode), d.path)
	}
	return nil
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkRanges checks that privnix's own id ranges are free on this system.
func (pl *Plan) checkRanges(s *conf.Settings) {
	for _, r := range idRanges(s) {
		if err := userdb.CheckRangeFree(r.r.Lo, r.r.Hi); err != nil {
			pl.Problems = append(pl.Problems, fmt.Sprintf("%s = %s: %v; fix: pick a free range in %s",
				r.name, r.r, err, "privnix.conf"))
		}
	}
}

type namedRange struct {
	name string
	r    conf.UIDRange
}

func idRanges(s *conf.Settings) []namedRange {
	return []namedRange{{"privnix-frontend-uids", s.FrontendUIDs}, {"privnix-storeproc-uids", s.StoreprocUIDs}, {"privnix-build-uids", s.BuildUIDs}}
}

// Print writes the plan as commands a shell could run (for --dry-run).
func (pl *Plan) Print(w io.Writer) {
	for _, a := range pl.Actions {
		fmt.Fprintf(w, "%s\t# %s\n", a, a.Why)
	}
	pl.printRest(w)
}

func (pl *Plan) printRest(w io.Writer) {
	for _, n := range pl.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, p := range pl.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
}

// Apply runs the plan's commands in order, each echoed to w as "+ command",
// and stops at the first that fails.
func (pl *Plan) Apply(w io.Writer) error {
	// mkdir -p makes missing parents with the umask's mode: they must be
	// reachable by everyone (/nix, /nix/var).
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	for _, a := range pl.Actions {
		fmt.Fprintf(w, "+ %s\n", a)
		cmd := exec.Command(a.Cmd[0], a.Cmd[1:]...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", a, err, out)
		} else if len(out) > 0 {
			w.Write(out)
		}
	}
	pl.printRest(w)
	return nil
}

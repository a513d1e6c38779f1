package admin

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"privnix/internal/userdb"
	"privnix/nix/conf"
)

// Severity says how bad a finding is.
type Severity string

// The severities, worst last.
const (
	Warning Severity = "warning" // works, but weaker or slower than it should be
	Error   Severity = "error"   // unsafe or broken
)

// Finding is one problem doctor found: which check, how bad, what is wrong
// and what to do about it.
type Finding struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix"`
}

// CheckInfo describes a check for the report and --help.
type CheckInfo struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Title    string   `json:"title"`
}

// DoctorOptions are `privnix doctor`'s flags.
type DoctorOptions struct {
	Privnixd            string // the daemon binary (default /usr/local/bin/privnixd)
	LibexecDir          string // its children (default /usr/local/libexec/privnix)
	MaxTrustedGroupSize int    // a trusted @group with more members is flagged (default 10)
	DaemonUID           uint32 // the uid privnixd runs as (0)
}

// Report is doctor's answer.
type Report struct {
	Checks   []CheckInfo `json:"checks"`
	Findings []Finding   `json:"findings"`
}

// Status is "ok", "warning" or "error": the worst finding's severity.
func (r *Report) Status() string {
	st := "ok"
	for _, f := range r.Findings {
		if f.Severity == Error {
			return "error"
		}
		st = "warning"
	}
	return st
}

// ExitCode is 0 when nothing was found, 1 for warnings only, 2 for errors
// (the convention of monitoring plugins).
func (r *Report) ExitCode() int {
	switch r.Status() {
	case "error":
		return 2
	case "warning":
		return 1
	}
	return 0
}

// doctor is the state the checks share.
type doctor struct {
	o        DoctorOptions
	s        *conf.Settings
	p        Paths
	warnings []string
	acc      accounts

	// the build users group, resolved once (group == "": builds use privnix-build-uids)
	group        string
	gid          uint32
	groupExists  bool
	members      []string
	memberInfo   map[string]account
	memberMissed []string // listed members NSS does not know
}

type check struct {
	CheckInfo
	run func(d *doctor) []Finding
}

// checks is every check doctor runs, in the order it reports them.
var checks = []check{
	{CheckInfo{"conf-warnings", Warning, "nix.conf and privnix.conf load without warnings"}, (*doctor).confWarnings},
	{CheckInfo{"privnix-setting-in-nix-conf", Warning, "privnix's own settings are in privnix.conf, not nix.conf (Nix clients would warn)"}, (*doctor).privnixInNixConf},
	{CheckInfo{"build-group-missing", Error, "the build users group exists"}, (*doctor).buildGroupMissing},
	{CheckInfo{"build-group-empty", Error, "the build users group has members"}, (*doctor).buildGroupEmpty},
	{CheckInfo{"build-group-extra-member", Error, "every member of the build users group is a build user"}, (*doctor).buildGroupExtra},
	{CheckInfo{"build-users-too-few", Warning, "there are at least max-jobs build users"}, (*doctor).buildUsersTooFew},
	{CheckInfo{"build-user-other-groups", Error, "build users are in no other group"}, (*doctor).buildUserOtherGroups},
	{CheckInfo{"build-user-login", Error, "build users have no login shell and no home"}, (*doctor).buildUserLogin},
	{CheckInfo{"store-owner", Error, "the store exists and is owned by root"}, (*doctor).storeOwner},
	{CheckInfo{"store-writable", Error, "nobody but root can write the store or replace it"}, (*doctor).storeWritable},
	{CheckInfo{"store-unreachable", Error, "every user can reach the store"}, (*doctor).storeUnreachable},
	{CheckInfo{"db-owner", Error, "the databases are root's and privnix's is private"}, (*doctor).dbOwner},
	{CheckInfo{"state-dir-perms", Error, "the state, log and socket directories are root's and not writable by others"}, (*doctor).stateDirs},
	{CheckInfo{"gcroots-profiles", Warning, "profiles are GC roots (gcroots/profiles link)"}, (*doctor).gcrootsProfiles},
	{CheckInfo{"socket-dir-open", Warning, "a restricted allowed-users is backed by a restricted socket directory"}, (*doctor).socketDirOpen},
	{CheckInfo{"socket-dir-closed", Warning, "allowed-users = * is not undone by a restricted socket directory"}, (*doctor).socketDirClosed},
	{CheckInfo{"admin-socket-open", Warning, "privnixd's admin socket (privnix status) is root's, mode 0600"}, (*doctor).adminSocket},
	{CheckInfo{"trusted-users-broad", Error, "trusted-users (root-equivalent) names no broad group and not *"}, (*doctor).trustedBroad},
	{CheckInfo{"substituter-no-keys", Error, "substituters come with trusted-public-keys"}, (*doctor).substituterKeys},
	{CheckInfo{"require-sigs-off", Error, "require-sigs is on"}, (*doctor).requireSigs},
	{CheckInfo{"sandbox-off", Error, "builds are sandboxed (sandbox = true)"}, (*doctor).sandbox},
	{CheckInfo{"binary-missing", Error, "privnixd and its children are installed"}, (*doctor).binaryMissing},
	{CheckInfo{"binary-owner", Error, "privnix's binaries are root's and only root can replace them"}, (*doctor).binaryOwner},
	{CheckInfo{"uid-range-overlap", Error, "privnix's id ranges are free in passwd, group, subuid and subgid"}, (*doctor).uidRanges},
}

// Checks lists every check doctor runs.
func Checks() []CheckInfo {
	out := make([]CheckInfo, len(checks))
	for i, c := range checks {
		out[i] = c.CheckInfo
	}
	return out
}

// Doctor loads the settings as privnixd does (through getenv) and runs
// every check. An error is returned only when the checks cannot run at all
// (the settings do not load); each problem is a Finding.
func Doctor(getenv func(string) string, o DoctorOptions) (*Report, error) {
	if o.Privnixd == "" {
		o.Privnixd = "/usr/local/bin/privnixd"
	}
	if o.LibexecDir == "" {
		o.LibexecDir = "/usr/local/libexec/privnix"
	}
	if o.MaxTrustedGroupSize == 0 {
		o.MaxTrustedGroupSize = 10
	}
	s, p, warnings, err := LoadSettings(getenv)
	if err != nil {
		return nil, fmt.Errorf("the settings do not load, so privnixd would not start: %w", err)
	}
	d := &doctor{o: o, s: s, p: p, warnings: warnings, acc: newAccounts(), memberInfo: map[string]account{}}
	if err := d.resolveGroup(); err != nil {
		return nil, err
	}
	r := &Report{Checks: Checks(), Findings: []Finding{}}
	for _, c := range checks {
		for _, f := range c.run(d) {
			f.Check, f.Severity = c.ID, c.Severity
			r.Findings = append(r.Findings, f)
		}
	}
	return r, nil
}

func (d *doctor) resolveGroup() error {
	d.group = d.s.BuildUsersGroup
	if d.group == "" {
		return nil
	}
	gid, members, ok, err := d.acc.group(d.group)
	if err != nil {
		return err
	}
	d.gid, d.members, d.groupExists = gid, members, ok
	for _, m := range members {
		u, ok, err := d.acc.user(m)
		if err != nil {
			return err
		}
		if !ok {
			d.memberMissed = append(d.memberMissed, m)
			continue
		}
		d.memberInfo[m] = u
	}
	return nil
}

func finding(msg, fix string, args ...any) Finding {
	return Finding{Message: fmt.Sprintf(msg, args...), Fix: fix}
}

func (d *doctor) confWarnings() []Finding {
	var out []Finding
	for _, w := range d.warnings {
		out = append(out, finding("%s", "correct or remove that line; privnixd logs the same warning at start", w))
	}
	return out
}

func (d *doctor) privnixInNixConf() []Finding {
	lines, err := conf.Parse(d.p.NixConf(), os.ReadFile)
	if err != nil {
		return nil // a missing nix.conf is fine; a broken one fails LoadSettings
	}
	var out []Finding
	for _, l := range lines {
		if n := strings.TrimPrefix(l.Name, "extra-"); strings.HasPrefix(n, "privnix-") && l.File == d.p.NixConf() {
			out = append(out, finding("%s: %s is privnix's own setting: Nix clients reading nix.conf warn about it",
				fmt.Sprintf("move the line to %s", d.p.PrivnixConf()), l.Where(), l.Name))
		}
	}
	return out
}

func (d *doctor) buildGroupMissing() []Finding {
	if d.group == "" || d.groupExists {
		return nil
	}
	return []Finding{finding("build-users-group is '%s', but there is no such group: privnixd cannot build",
		"privnix setup (it creates the group and its users)", d.group)}
}

func (d *doctor) buildGroupEmpty() []Finding {
	if d.group == "" || !d.groupExists || len(d.members) > 0 {
		return nil
	}
	return []Finding{finding("the build users group '%s' has no members: every build fails with \"the build users group '%s' has no members\"",
		"privnix setup --build-users N", d.group, d.group)}
}

// isBuildUser says whether a group member looks like a build user made as
// the manual says: primary group the build users group, no login.
func (d *doctor) isBuildUser(u account) bool {
	return u.GID == d.gid && u.UID != 0 && u.UID != d.o.DaemonUID
}

func (d *doctor) buildGroupExtra() []Finding {
	var out []Finding
	for _, m := range d.memberMissed {
		out = append(out, finding("'%s' is listed in the build users group '%s' but no such user exists: Nix refuses to build with it",
			fmt.Sprintf("gpasswd --delete %s %s", m, d.group), m, d.group))
	}
	for _, m := range d.members {
		u, ok := d.memberInfo[m]
		if !ok || d.isBuildUser(u) {
			continue
		}
		why := fmt.Sprintf("its primary group is '%s'", u.PrimaryGroup)
		if u.UID == 0 || u.UID == d.o.DaemonUID {
			why = fmt.Sprintf("it has uid %d, the daemon's own", u.UID)
		}
		out = append(out, finding("'%s' is a member of the build users group '%s' but is not a build user (%s): builds may run as it, "+
			"its processes are killed before each such build, and privnixd refuses its connections",
			fmt.Sprintf("gpasswd --delete %s %s", m, d.group), m, d.group, why))
	}
	return out
}

// buildUsers are the members that are build users.
func (d *doctor) buildUsers() []account {
	var out []account
	for _, m := range d.members {
		if u, ok := d.memberInfo[m]; ok && d.isBuildUser(u) {
			out = append(out, u)
		}
	}
	return out
}

func (d *doctor) buildUsersTooFew() []Finding {
	n := len(d.buildUsers())
	if d.group == "" || !d.groupExists || n == 0 || uint32(n) >= d.s.MaxJobs {
		return nil
	}
	return []Finding{finding("max-jobs is %d but the build users group '%s' has %d build users: at most %d builds run at once, the others wait for a build user",
		fmt.Sprintf("privnix setup --build-users %d", d.s.MaxJobs), d.s.MaxJobs, d.group, n, n)}
}

func (d *doctor) buildUserOtherGroups() []Finding {
	var out []Finding
	for _, u := range d.buildUsers() {
		if other := otherGroups(u, d.group); len(other) > 0 {
			out = append(out, finding("build user '%s' is also in %s: a build running as it (under nix-daemon, or any tool that keeps supplementary groups) gets those groups' access",
				fmt.Sprintf("usermod --groups %s %s", d.group, u.Name), u.Name, strings.Join(other, ", ")))
		}
	}
	return out
}

func (d *doctor) buildUserLogin() []Finding {
	var out []Finding
	for _, u := range d.buildUsers() {
		var bad []string
		if !isNologin(u.Shell) {
			bad = append(bad, "login shell "+u.Shell)
		}
		if !isNoHome(u.Home) {
			bad = append(bad, "home "+u.Home)
		}
		if len(bad) > 0 {
			out = append(out, finding("build user '%s' has a %s: a builder's uid must not be an account anyone can log into or keep files in",
				fmt.Sprintf("usermod --shell %s --home /var/empty %s", nologin(), u.Name), u.Name, strings.Join(bad, " and a ")))
		}
	}
	return out
}

func (d *doctor) storeOwner() []Finding {
	st, err := stat(d.p.StoreDir)
	switch {
	case err != nil:
		return []Finding{finding("%s: %v", "check the path", d.p.StoreDir, err)}
	case !st.Exists:
		return []Finding{finding("the store %s does not exist", "privnix setup", d.p.StoreDir)}
	case st.Symlink || !st.Dir:
		return []Finding{finding("the store %s is not a directory (a symlink?): privnix never follows a symlink to the store",
			"make it a real directory (or set NIX_STORE_DIR to the real path)", d.p.StoreDir)}
	case st.UID != 0:
		return []Finding{finding("the store %s is owned by uid %d, not root: that user can change any store path",
			fmt.Sprintf("chown root:root %s", d.p.StoreDir), d.p.StoreDir, st.UID)}
	}
	return nil
}

func (d *doctor) storeWritable() []Finding {
	var out []Finding
	st, err := stat(d.p.StoreDir)
	if err == nil && st.Exists && st.Dir && st.Mode&0o022 != 0 {
		who := "its group"
		if st.Mode&0o002 != 0 {
			who = "everyone"
		}
		out = append(out, finding("the store %s is writable by %s (mode %s): they can create store paths, squat names and, without the sticky bit, delete them (privnix keeps the store root's alone)",
			fmt.Sprintf("chown root:root %s && chmod 0755 %s", d.p.StoreDir, d.p.StoreDir), d.p.StoreDir, who, octal(st.Mode)))
	}
	if dir, ast, err := unsafeAncestor(d.p.StoreDir); err == nil && dir != "" {
		out = append(out, finding("%s, above the store, is owned by uid %d with mode %s: its owner or group can replace the whole store",
			fmt.Sprintf("chown root:root %s && chmod go-w %s", dir, dir), dir, ast.UID, octal(ast.Mode)))
	}
	return out
}

func (d *doctor) storeUnreachable() []Finding {
	for dir := d.p.StoreDir; ; dir = filepath.Dir(dir) {
		st, err := stat(dir)
		if err == nil && st.Exists && st.Dir && st.Mode&0o001 == 0 {
			return []Finding{finding("%s has mode %s: users other than its owner and group cannot reach the store, so their Nix commands fail",
				fmt.Sprintf("chmod o+x %s", dir), dir, octal(st.Mode))}
		}
		if dir == "/" {
			return nil
		}
	}
}

func (d *doctor) dbOwner() []Finding {
	var out []Finding
	db := filepath.Join(d.p.StateDir, "db")
	if st, err := stat(db); err == nil && st.Exists && (st.UID != 0 || st.Mode&0o022 != 0 || st.Symlink) {
		out = append(out, finding("%s is owned by uid %d with mode %s: the database directory must be root's and writable by root only",
			fmt.Sprintf("chown root:root %s && chmod 0755 %s", db, db), db, st.UID, octal(st.Mode)))
	}
	pdb := d.p.DBDir()
	st, err := stat(pdb)
	if err != nil || !st.Exists {
		return out // privnixd makes it at first start
	}
	if st.UID != 0 || st.Mode&0o077 != 0 || st.Symlink {
		out = append(out, finding("privnixd's database %s is owned by uid %d with mode %s: it must be root's and private",
			fmt.Sprintf("chown -R root:root %s && chmod 0700 %s", pdb, pdb), pdb, st.UID, octal(st.Mode)))
	}
	ents, _ := os.ReadDir(pdb)
	for _, e := range ents {
		p := filepath.Join(pdb, e.Name())
		if est, err := stat(p); err == nil && est.Exists && est.UID != 0 {
			out = append(out, finding("%s in privnixd's database is owned by uid %d, not root",
				fmt.Sprintf("chown -R root:root %s", pdb), p, est.UID))
			break
		}
	}
	return out
}

func (d *doctor) stateDirs() []Finding {
	var out []Finding
	for _, spec := range storeDirs(d.p, "", 0o755) {
		if spec.path == d.p.StoreDir || spec.path == filepath.Join(d.p.StateDir, "db") {
			continue // store-owner, store-writable and db-owner say more
		}
		st, err := stat(spec.path)
		if err != nil || !st.Exists {
			if spec.path == d.p.StateDir || spec.path == d.p.SocketDir() {
				out = append(out, finding("%s does not exist", "privnix setup", spec.path))
			}
			continue
		}
		switch {
		case st.Symlink || !st.Dir:
			out = append(out, finding("%s is not a directory (a symlink?)", "make it a real directory owned by root", spec.path))
		case st.UID != 0 || st.Mode&0o022 != 0:
			out = append(out, finding("%s is owned by uid %d with mode %s: whoever can write it can replace what privnixd keeps there (%s)",
				fmt.Sprintf("chown root %s && chmod go-w %s (or privnix setup)", spec.path, spec.path), spec.path, st.UID, octal(st.Mode), spec.why))
		}
	}
	return out
}

// adminSocket checks the socket of privnix status when privnixd runs: only
// its owner may connect (privnixd also checks the peer's uid; the mode is the
// first wall).
func (d *doctor) adminSocket() []Finding {
	path := d.p.AdminSocket()
	st, err := stat(path)
	if err != nil || !st.Exists {
		return nil
	}
	if st.UID != d.o.DaemonUID || st.Mode&0o077 != 0 {
		return []Finding{finding("%s is owned by uid %d with mode %s: users other than root can connect to privnixd's admin channel "+
			"(privnixd refuses them by their uid, but the mode should stop them first)",
			fmt.Sprintf("restart privnixd, which recreates it 0600; chown root %s && chmod 0600 %s", path, path), path, st.UID, octal(st.Mode))}
	}
	return nil
}

func (d *doctor) gcrootsProfiles() []Finding {
	link := filepath.Join(d.p.StateDir, "gcroots", "profiles")
	if t, err := os.Readlink(link); err == nil && t == filepath.Join(d.p.StateDir, "profiles") {
		return nil
	}
	if st, _ := stat(d.p.StateDir); !st.Exists {
		return nil // state-dir-perms reports it
	}
	return []Finding{finding("%s is not a link to %s: the garbage collector does not see profiles as roots and would delete what they hold",
		fmt.Sprintf("ln -sfn %s %s (or privnix setup)", filepath.Join(d.p.StateDir, "profiles"), link), link, filepath.Join(d.p.StateDir, "profiles"))}
}

// socketOpenToAll reports whether any user can reach the socket's directory:
// it and every directory above it are searchable by others.
func (d *doctor) socketOpenToAll() (open bool, blocker string, exists bool) {
	for dir := d.p.SocketDir(); ; dir = filepath.Dir(dir) {
		st, err := stat(dir)
		if err != nil || !st.Exists {
			return false, dir, false
		}
		if st.Mode&0o001 == 0 {
			return false, dir, true
		}
		if dir == "/" {
			return true, "", true
		}
	}
}

func (d *doctor) socketDirOpen() []Finding {
	if slices.Contains(d.s.AllowedUsers, "*") {
		return nil
	}
	if open, _, _ := d.socketOpenToAll(); !open {
		return nil
	}
	return []Finding{finding("allowed-users is '%s' but every user can reach the socket in %s: privnixd refuses the others at accept, "+
		"but they still reach the daemon's protocol code",
		"privnix setup --socket-group GROUP (a group holding the allowed users: socket directory root:GROUP 0750)",
		strings.Join(d.s.AllowedUsers, " "), d.p.SocketDir())}
}

func (d *doctor) socketDirClosed() []Finding {
	if !slices.Contains(d.s.AllowedUsers, "*") {
		return nil
	}
	open, blocker, exists := d.socketOpenToAll()
	if open || !exists {
		return nil
	}
	st, _ := stat(blocker)
	g, _ := d.acc.db.GroupName(st.GID)
	return []Finding{finding("allowed-users is '*' but %s (mode %s, group '%s') keeps users outside that group from the socket: "+
		"nix.conf and the file system disagree on who may use Nix",
		fmt.Sprintf("either list the allowed users in allowed-users (e.g. @%s) or chmod o+x %s", g, blocker), blocker, octal(st.Mode), g)}
}

func (d *doctor) trustedBroad() []Finding {
	var out []Finding
	passwd, _ := os.ReadFile("/etc/passwd")
	for _, e := range d.s.TrustedUsers {
		if e == "*" {
			out = append(out, finding("trusted-users contains '*': every user who can connect is root-equivalent (can import unsigned paths, set any setting)",
				"list the few admins by name or a small @group in trusted-users"))
			continue
		}
		g, ok := strings.CutPrefix(e, "@")
		if !ok || g == "" {
			continue
		}
		gid, members, found, err := d.acc.group(g)
		if err != nil || !found {
			continue
		}
		for _, u := range usersWithPrimaryGID(passwd, gid) {
			if !slices.Contains(members, u) {
				members = append(members, u)
			}
		}
		if len(members) > d.o.MaxTrustedGroupSize || g == "users" {
			out = append(out, finding("trusted-users contains '%s', a group of %d users: each of them is root-equivalent to the daemon",
				fmt.Sprintf("trust a smaller group (at most %d members) or the admins by name", d.o.MaxTrustedGroupSize), e, len(members)))
		}
	}
	return out
}

func (d *doctor) substituterKeys() []Finding {
	if len(d.s.TrustedPublicKeys) > 0 || (len(d.s.Substituters) == 0 && len(d.s.TrustedSubstituters) == 0) {
		return nil
	}
	return []Finding{finding("substituters (%s) are set but trusted-public-keys is empty: %s",
		"add each cache's public key to trusted-public-keys", strings.Join(append(slices.Clone(d.s.Substituters), d.s.TrustedSubstituters...), " "),
		map[bool]string{true: "every substituted path is refused", false: "with require-sigs = false, every path a cache serves is accepted unchecked"}[d.s.RequireSigs])}
}

func (d *doctor) requireSigs() []Finding {
	if d.s.RequireSigs {
		return nil
	}
	return []Finding{finding("require-sigs = false: any allowed user can add unsigned paths with any content under any input-addressed name (nix copy --no-check-sigs), and caches are not checked",
		"remove require-sigs = false; sign what you copy with privnix key sign or nix store sign")}
}

func (d *doctor) sandbox() []Finding {
	switch d.s.Sandbox {
	case conf.SandboxOff:
		return []Finding{finding("sandbox = false: builds see the host's file system and network, and a build can read what other builds and users left readable",
			"sandbox = true in nix.conf")}
	case conf.SandboxRelaxed:
		return []Finding{finding("sandbox = relaxed: any user can write a derivation with __noChroot = true that builds outside the sandbox",
			"sandbox = true in nix.conf")}
	}
	return nil
}

// binaries are the files doctor checks: privnixd and every file in the
// libexec directory (privnix-frontend at least).
func (d *doctor) binaries() (present []string, missing []string) {
	for _, p := range []string{d.o.Privnixd, filepath.Join(d.o.LibexecDir, "privnix-frontend")} {
		if ok, _ := isExecutable(p); !ok {
			missing = append(missing, p)
		}
	}
	present = append(present, d.o.Privnixd)
	ents, _ := os.ReadDir(d.o.LibexecDir)
	for _, e := range ents {
		present = append(present, filepath.Join(d.o.LibexecDir, e.Name()))
	}
	return present, missing
}

func (d *doctor) binaryMissing() []Finding {
	var out []Finding
	_, missing := d.binaries()
	for _, m := range missing {
		out = append(out, finding("%s is not an executable file", "make install (or pass --privnixd and --libexec)", m))
	}
	return out
}

func (d *doctor) binaryOwner() []Finding {
	var out []Finding
	present, _ := d.binaries()
	seen := map[string]bool{}
	for _, b := range present {
		st, err := stat(b)
		if err != nil || !st.Exists {
			continue
		}
		if st.UID != 0 || st.Mode&0o022 != 0 {
			out = append(out, finding("%s is owned by uid %d with mode %s: whoever can write it runs code as root at the next start of privnixd",
				fmt.Sprintf("chown root:root %s && chmod 0755 %s", b, b), b, st.UID, octal(st.Mode)))
		}
		if dir, ast, err := unsafeAncestor(b); err == nil && dir != "" && !seen[dir] {
			seen[dir] = true
			out = append(out, finding("%s, which holds %s, is owned by uid %d with mode %s: its owner or group can replace the binary",
				fmt.Sprintf("chown root:root %s && chmod go-w %s", dir, dir), dir, b, ast.UID, octal(ast.Mode)))
		}
	}
	return out
}

func (d *doctor) uidRanges() []Finding {
	var out []Finding
	for _, r := range idRanges(d.s) {
		if err := userdb.CheckRangeFree(r.r.Lo, r.r.Hi); err != nil {
			out = append(out, finding("%s = %s: %v: that account's processes (or a user's rootless containers) would share ids with privnix's confined processes, and privnixd refuses to start",
				fmt.Sprintf("set %s to a free range in %s", r.name, d.p.PrivnixConf()), r.name, r.r, err))
		}
	}
	return out
}

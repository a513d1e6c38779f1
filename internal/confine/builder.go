package confine

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Builder profile: what a derivation's builder may not do. Unlike the
// Frontend and StoreProc tables, which allow a list and refuse the rest, a
// builder runs arbitrary compilers, shells and test suites, so its filter
// allows by default and refuses a list, as Nix's does. Rows with conditions
// are allowed when an alternative matches and refused with EPERM otherwise
// (as in policy.go); unconditional rows carry their errno; a syscall without
// a row is allowed. A foreign ABI (i386 via int 0x80) and x32 numbers still
// kill the process: no table is written for them (i686 builds on an x86_64
// host are therefore refused, not silently unfiltered).
//
// The buildproc (cmd/privnix-build) applies it with ApplyBuilder right
// before execve, after dropping to the build user.

// builderRules is the table. Options known only at apply time: network
// (fixed-output builds share the host's network namespace, where abstract
// unix sockets of the host are reachable) and scoped (Landlock confines
// abstract unix sockets to the build's own domain).
func builderRules(network, scoped bool) []rule {
	noSetid := [][]match{{bitsClear(1, unix.S_ISUID|unix.S_ISGID)}}
	noSetid2 := [][]match{{bitsClear(2, unix.S_ISUID|unix.S_ISGID)}}
	noSetid3 := [][]match{{bitsClear(3, unix.S_ISUID|unix.S_ISGID)}}
	rules := []rule{
		// No setuid or setgid file, however it is made (Nix refuses the
		// chmod family; fchmodat2 was the 2024 gap). Creating a file with
		// those bits in open's or mknod's mode is refused too: the mode
		// argument is only read with O_CREAT/O_TMPFILE, and libcs pass 0
		// otherwise.
		{name: "chmod", nr: unix.SYS_CHMOD, any: noSetid},
		{name: "fchmod", nr: unix.SYS_FCHMOD, any: noSetid},
		{name: "fchmodat", nr: unix.SYS_FCHMODAT, any: noSetid2},
		{name: "fchmodat2", nr: unix.SYS_FCHMODAT2, any: noSetid2},
		{name: "open", nr: unix.SYS_OPEN, any: noSetid2},
		{name: "creat", nr: unix.SYS_CREAT, any: noSetid},
		{name: "openat", nr: unix.SYS_OPENAT, any: noSetid3},
		{name: "mknod", nr: unix.SYS_MKNOD, any: noSetid},
		{name: "mknodat", nr: unix.SYS_MKNODAT, any: noSetid2},
		// openat2 carries its mode in memory the filter cannot read: ENOSYS
		// makes callers (Go's os.Root, for one) fall back to openat.
		{name: "openat2", nr: unix.SYS_OPENAT2, errno: unix.ENOSYS},

		// No extended attributes or ACLs (a file capability is an xattr).
		// ENOTSUP, as Nix: tools treat it as "this filesystem has none".
		{name: "setxattr", nr: unix.SYS_SETXATTR, errno: unix.ENOTSUP},
		{name: "lsetxattr", nr: unix.SYS_LSETXATTR, errno: unix.ENOTSUP},
		{name: "fsetxattr", nr: unix.SYS_FSETXATTR, errno: unix.ENOTSUP},
		{name: "setxattrat", nr: unix.SYS_SETXATTRAT, errno: unix.ENOTSUP},

		// io_uring performs its operations outside this filter.
		{name: "io_uring_setup", nr: unix.SYS_IO_URING_SETUP, errno: unix.EPERM},
		{name: "io_uring_enter", nr: unix.SYS_IO_URING_ENTER, errno: unix.EPERM},
		{name: "io_uring_register", nr: unix.SYS_IO_URING_REGISTER, errno: unix.EPERM},

		// Privileged or kernel-attack-surface calls no build needs. The
		// build user holds no capability, so most would fail anyway; the
		// rows keep them out of reach of a nested user namespace too.
		{name: "mount", nr: unix.SYS_MOUNT, errno: unix.EPERM},
		{name: "umount2", nr: unix.SYS_UMOUNT2, errno: unix.EPERM},
		{name: "pivot_root", nr: unix.SYS_PIVOT_ROOT, errno: unix.EPERM},
		{name: "open_tree", nr: unix.SYS_OPEN_TREE, errno: unix.EPERM},
		{name: "move_mount", nr: unix.SYS_MOVE_MOUNT, errno: unix.EPERM},
		{name: "fsopen", nr: unix.SYS_FSOPEN, errno: unix.EPERM},
		{name: "fsconfig", nr: unix.SYS_FSCONFIG, errno: unix.EPERM},
		{name: "fsmount", nr: unix.SYS_FSMOUNT, errno: unix.EPERM},
		{name: "fspick", nr: unix.SYS_FSPICK, errno: unix.EPERM},
		{name: "mount_setattr", nr: unix.SYS_MOUNT_SETATTR, errno: unix.EPERM},
		{name: "init_module", nr: unix.SYS_INIT_MODULE, errno: unix.EPERM},
		{name: "finit_module", nr: unix.SYS_FINIT_MODULE, errno: unix.EPERM},
		{name: "delete_module", nr: unix.SYS_DELETE_MODULE, errno: unix.EPERM},
		{name: "kexec_load", nr: unix.SYS_KEXEC_LOAD, errno: unix.EPERM},
		{name: "kexec_file_load", nr: unix.SYS_KEXEC_FILE_LOAD, errno: unix.EPERM},
		{name: "reboot", nr: unix.SYS_REBOOT, errno: unix.EPERM},
		{name: "swapon", nr: unix.SYS_SWAPON, errno: unix.EPERM},
		{name: "swapoff", nr: unix.SYS_SWAPOFF, errno: unix.EPERM},
		{name: "acct", nr: unix.SYS_ACCT, errno: unix.EPERM},
		{name: "bpf", nr: unix.SYS_BPF, errno: unix.EPERM},
		{name: "perf_event_open", nr: unix.SYS_PERF_EVENT_OPEN, errno: unix.EPERM},
		{name: "userfaultfd", nr: unix.SYS_USERFAULTFD, errno: unix.EPERM},
		{name: "add_key", nr: unix.SYS_ADD_KEY, errno: unix.EPERM},
		{name: "request_key", nr: unix.SYS_REQUEST_KEY, errno: unix.EPERM},
		{name: "keyctl", nr: unix.SYS_KEYCTL, errno: unix.EPERM},
		{name: "open_by_handle_at", nr: unix.SYS_OPEN_BY_HANDLE_AT, errno: unix.EPERM},
		{name: "settimeofday", nr: unix.SYS_SETTIMEOFDAY, errno: unix.EPERM},
		{name: "clock_settime", nr: unix.SYS_CLOCK_SETTIME, errno: unix.EPERM},
		{name: "clock_adjtime", nr: unix.SYS_CLOCK_ADJTIME, errno: unix.EPERM},
		{name: "adjtimex", nr: unix.SYS_ADJTIMEX, errno: unix.EPERM},
		{name: "quotactl", nr: unix.SYS_QUOTACTL, errno: unix.EPERM},
		{name: "syslog", nr: unix.SYS_SYSLOG, errno: unix.EPERM},
	}
	if network {
		// A fixed-output build shares the host's network namespace, so the
		// host's abstract unix sockets are reachable, and an fd to $out
		// could be handed to a host process (CVE-2024-27297). No AF_UNIX
		// socket at all; socketpair stays (it reaches nobody outside).
		// Landlock's abstract-socket scope (ApplyBuilder, ABI ≥ 6) is the
		// second layer, and the only one for socketpair-free tricks.
		rules = append(rules, rule{name: "socket", nr: unix.SYS_SOCKET, any: [][]match{
			{eq(0, unix.AF_INET)},
			{eq(0, unix.AF_INET6)},
			{eq(0, unix.AF_NETLINK)},
		}})
		// A socketpair end needs no socket(): sendto/sendmsg with an
		// address sends a datagram, SCM_RIGHTS included, to any abstract
		// datagram socket of the namespace. Only Landlock's scope
		// (unix_may_send) stops that, so without it socketpair goes too.
		if !scoped {
			rules = append(rules, rule{name: "socketpair", nr: unix.SYS_SOCKETPAIR, errno: unix.EPERM})
		}
	}
	return rules
}

// assembleAllowDefault is assemble with ALLOW as the default action: a
// syscall without a row is allowed.
func assembleAllowDefault(rules []rule, deny unix.Errno) ([]unix.SockFilter, error) {
	prog, err := assemble(rules, deny)
	if err != nil {
		return nil, err
	}
	// assemble ends every program with the default action, retErrno(deny).
	last := len(prog) - 1
	if prog[last] != retErrno(deny) {
		return nil, fmt.Errorf("seccomp: unexpected program end %#v", prog[last])
	}
	prog[last] = ret(unix.SECCOMP_RET_ALLOW)
	return prog, nil
}

// BuilderFilter returns the compiled Builder seccomp program (for tests and
// for the record); scoped says Landlock scopes abstract unix sockets.
func BuilderFilter(network, scoped bool) ([]unix.SockFilter, error) {
	return assembleAllowDefault(builderRules(network, scoped), unix.EPERM)
}

// BuilderOptions are the per-build parts of the Builder profile.
type BuilderOptions struct {
	// Network: the build shares the host's network (fixed-output).
	Network bool
}

// BuilderConfinement says what ApplyBuilder achieved, for the record.
type BuilderConfinement struct {
	LandlockABI    int  // 0: no Landlock
	ScopedAbstract bool // abstract unix sockets outside the build are unreachable (Landlock ABI ≥ 6)
}

// ApplyBuilder confines the calling process as a builder about to be exec'd:
// no_new_privs, Landlock scopes (abstract unix sockets and signals outside
// the build's domain) where the kernel has them, the Builder seccomp filter,
// RLIMIT_CORE 0. It must run after the process dropped to the build user
// (it refuses uid or gid 0 and any capability) and right before execve, on a
// goroutine locked to its thread; every step reaches every thread (TSYNC,
// AllThreadsSyscall), so a binary calling it must be built without cgo.
func ApplyBuilder(o BuilderOptions) (BuilderConfinement, error) {
	var c BuilderConfinement
	if nativeAuditArch == 0 {
		return c, fmt.Errorf("confine builder: seccomp table not audited for %s: %w", runtime.GOARCH, ErrUnsupported)
	}
	// The buildproc drops with setgroups(0), setresgid, setresuid from root;
	// the kernel clears every capability when the uids leave 0.
	rep, err := Status()
	if err != nil {
		return c, fmt.Errorf("confine builder: %w", err)
	}
	for i := range 4 {
		if rep.Uid[i] == 0 || rep.Gid[i] == 0 {
			return c, fmt.Errorf("confine builder: uid %v gid %v: %w", rep.Uid, rep.Gid, ErrPrivileged)
		}
	}
	if len(rep.Groups) > 0 || rep.CapEff != 0 || rep.CapPrm != 0 || rep.CapAmb != 0 || rep.CapInh != 0 {
		return c, fmt.Errorf("confine builder: groups %v, capabilities eff=%#x prm=%#x inh=%#x amb=%#x: %w",
			rep.Groups, rep.CapEff, rep.CapPrm, rep.CapInh, rep.CapAmb, ErrPrivileged)
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		if e == unix.ENOTSUP {
			return c, fmt.Errorf("confine builder: binary links cgo; build it with CGO_ENABLED=0: %w", ErrUnsupported)
		}
		return c, fmt.Errorf("confine builder: no_new_privs: %w", e)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return c, fmt.Errorf("confine builder: RLIMIT_CORE 0: %w", err)
	}
	c.LandlockABI = landlockABI()
	if c.LandlockABI >= 6 {
		if err := restrictScopes(); err != nil {
			return c, fmt.Errorf("confine builder: %w", err)
		}
		c.ScopedAbstract = true
	}
	prog, err := BuilderFilter(o.Network, c.ScopedAbstract)
	if err != nil {
		return c, fmt.Errorf("confine builder: %w", err)
	}
	if err := installSeccomp(prog); err != nil {
		return c, fmt.Errorf("confine builder: %w", err)
	}
	return c, nil
}

// restrictScopes puts every thread in a Landlock domain that handles no
// filesystem or network access (the mount namespace is the filesystem view)
// but scopes abstract unix sockets and signals: nothing in the build can
// connect to an abstract socket bound outside it, or signal a process outside
// it.
func restrictScopes() error {
	attr := landlockRulesetAttr{scoped: unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL}
	rfd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET,
		uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if e != 0 {
		return fmt.Errorf("landlock_create_ruleset (scopes): %w", e)
	}
	defer unix.Close(int(rfd))
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, rfd, 0, 0); e != 0 {
		return fmt.Errorf("landlock_restrict_self on all threads: %w", e)
	}
	return nil
}

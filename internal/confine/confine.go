package confine

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Profile names a role's confinement.
type Profile int

const (
	Frontend  Profile = iota + 1 // worker-protocol server: reads beneath given paths, writes only to held fds
	StoreProc                    // NAR unpacker: additionally creates files, dirs, symlinks beneath its staging dir
	Fetcher                      // binary-cache client: reads beneath given paths, opens IPv4/IPv6 sockets, writes only to held fds
	Builder                      // not implemented yet: Apply refuses it
)

func (p Profile) String() string {
	switch p {
	case Frontend:
		return "frontend"
	case StoreProc:
		return "storeproc"
	case Fetcher:
		return "fetcher"
	case Builder:
		return "builder"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// Options are the per-process parts of a profile.
type Options struct {
	// ReadOnlyPaths are files or directories the process may read beneath
	// (the store directory, for instance). Opened once, by path, during Apply.
	ReadOnlyPaths []string
	// WritablePaths and WritableDirFDs are directories beneath which a
	// StoreProc may create and write files, directories and symlinks: its
	// staging directory, by path or by an fd it was handed. Frontend refuses
	// both. Landlock gives a directory fd no exemption (see landlock.go),
	// so an fd-relative writer needs one of these.
	WritablePaths  []string
	WritableDirFDs []int
	// ConnectTCPPorts (Fetcher only) are the TCP ports connect may reach
	// where Landlock restricts the network (ABI ≥ 4); every other port, and
	// binding any, stays refused. UDP (DNS) is not restricted by Landlock.
	ConnectTCPPorts []uint16
	// SendFDs, if non-empty, are the only fds sendmsg and sendto may use
	// (the monitor channel), so that SCM_RIGHTS can go nowhere else.
	SendFDs []int
	// InheritedCredentials says the monitor runs without root, so it could
	// not give this child a uid, groups or bounding set of its own: the
	// child shares the monitor's uid and supplementary groups, and keeps the
	// bounding set it was born with. Those are then accepted; uid 0 and any
	// held capability are still refused, and no_new_privs makes the bounding
	// set moot (nothing this process execs can gain a capability).
	InheritedCredentials bool
}

var (
	// ErrPrivileged: the process runs as uid or gid 0, holds a capability,
	// has supplementary groups, or has a non-empty bounding set. The spawner
	// got the demotion wrong; the child must not run.
	ErrPrivileged = errors.New("confine: process is privileged")
	// ErrUnsupported: this architecture, kernel or build cannot give the
	// confinement asked for (no Landlock, cgo binary, unaudited GOARCH, a
	// profile not written yet). Apply fails closed.
	ErrUnsupported = errors.New("confine: not supported")
)

// Apply makes the calling process's confinement final. It is the one ordered
// demotion sequence of every unprivileged privnix child; call it first thing
// in main, after taking the fds from the fixed layout and before reading a
// byte from a peer. On error the process must exit: some steps may already
// have been applied, and none can be undone.
//
// Apply changes process-wide state from whatever thread it runs on; it locks
// the calling goroutine to its thread only so that its final check reads the
// thread it confined.
func Apply(p Profile, opts Options) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	var table func(ruleEnv) []rule
	switch p {
	case Frontend:
		if len(opts.WritablePaths) > 0 || len(opts.WritableDirFDs) > 0 {
			return fmt.Errorf("confine %s: a frontend gets no writable paths or directory fds: %w", p, ErrUnsupported)
		}
		if len(opts.ConnectTCPPorts) > 0 {
			return fmt.Errorf("confine %s: only a fetcher connects: %w", p, ErrUnsupported)
		}
		table = frontendRules
	case StoreProc:
		if len(opts.ConnectTCPPorts) > 0 {
			return fmt.Errorf("confine %s: only a fetcher connects: %w", p, ErrUnsupported)
		}
		table = storeProcRules
	case Fetcher:
		if len(opts.WritablePaths) > 0 || len(opts.WritableDirFDs) > 0 {
			return fmt.Errorf("confine %s: a fetcher gets no writable paths or directory fds: %w", p, ErrUnsupported)
		}
		table = fetcherRules
	default:
		return fmt.Errorf("confine %s: profile not implemented: %w", p, ErrUnsupported)
	}
	if nativeAuditArch == 0 {
		return fmt.Errorf("confine %s: seccomp table not audited for %s: %w", p, runtime.GOARCH, ErrUnsupported)
	}

	// 1. Refuse to run privileged. The monitor demotes through
	//    SysProcAttr.Credential and starts the child with an empty bounding
	//    set (Spawn); an unprivileged process cannot drop its own bounding
	//    set (PR_CAPBSET_DROP needs CAP_SETPCAP), so here it is only checked.
	if err := checkUnprivileged(opts.InheritedCredentials); err != nil {
		return fmt.Errorf("confine %s: %w", p, err)
	}
	// Opened now, read after the last step: Landlock may hide /proc later.
	self, err := os.Open("/proc/thread-self/status")
	if err != nil {
		return fmt.Errorf("confine %s: %w", p, err)
	}
	defer self.Close()

	// 2. no_new_privs on every thread: Landlock requires it of each thread
	//    that restricts itself, and nothing exec'd could gain privileges.
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		if e == unix.ENOTSUP {
			// syscall.AllThreadsSyscall refuses in any binary that links
			// runtime/cgo, which includes every binary importing net or
			// os/user built with CGO_ENABLED=1 (the default where gcc exists).
			return fmt.Errorf("confine %s: binary links cgo, so Landlock cannot reach every thread; build it with CGO_ENABLED=0 (or -tags netgo,osusergo): %w", p, ErrUnsupported)
		}
		return fmt.Errorf("confine %s: no_new_privs: %w", p, e)
	}
	// 3. Not dumpable (per process): no ptrace or /proc/pid/mem by processes
	//    of the same uid, /proc/pid files owned by root, and no core dumps.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("confine %s: dumpable 0: %w", p, err)
	}
	// 4. No core files either way (per process).
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("confine %s: RLIMIT_CORE 0: %w", p, err)
	}
	// 5. Landlock: the filesystem view, on every thread.
	if err := applyLandlock(opts); err != nil {
		return fmt.Errorf("confine %s: %w", p, err)
	}
	// 6. seccomp, last, so that the table need not allow steps 2–5.
	env := ruleEnv{pid: uint32(os.Getpid())}
	for _, fd := range opts.SendFDs {
		if fd < 0 {
			return fmt.Errorf("confine %s: bad send fd %d", p, fd)
		}
		env.sendFDs = append(env.sendFDs, uint32(fd))
	}
	prog, err := assemble(table(env), unix.EPERM)
	if err != nil {
		return fmt.Errorf("confine %s: %w", p, err)
	}
	if err := installSeccomp(prog); err != nil {
		return fmt.Errorf("confine %s: %w", p, err)
	}

	// 7. Check the result on this thread (TSYNC covered the others, or
	//    failed).
	rep, err := ParseStatus(self)
	if err != nil {
		return fmt.Errorf("confine %s: re-reading status: %w", p, err)
	}
	if !rep.NoNewPrivs || rep.Seccomp != 2 {
		return fmt.Errorf("confine %s: after Apply NoNewPrivs=%v Seccomp=%d", p, rep.NoNewPrivs, rep.Seccomp)
	}
	return nil
}

func checkUnprivileged(inherited bool) error {
	rep, err := Status()
	if err != nil {
		return err
	}
	for i := range 4 {
		if rep.Uid[i] == 0 || rep.Gid[i] == 0 {
			return fmt.Errorf("uid %v gid %v: %w", rep.Uid, rep.Gid, ErrPrivileged)
		}
	}
	if len(rep.Groups) > 0 && !inherited {
		return fmt.Errorf("supplementary groups %v: %w", rep.Groups, ErrPrivileged)
	}
	if rep.CapEff != 0 || rep.CapPrm != 0 || rep.CapAmb != 0 {
		return fmt.Errorf("capabilities eff=%#x prm=%#x amb=%#x: %w", rep.CapEff, rep.CapPrm, rep.CapAmb, ErrPrivileged)
	}
	if rep.CapBnd != 0 && !inherited {
		return fmt.Errorf("bounding set %#x not empty (start the child with confine.Spawn): %w", rep.CapBnd, ErrPrivileged)
	}
	return nil
}

func applyLandlock(opts Options) error {
	abi := landlockABI()
	if abi < 1 {
		return fmt.Errorf("landlock unavailable: %w", ErrUnsupported)
	}
	var rules []landlockRule
	for _, path := range opts.ReadOnlyPaths {
		fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("read-only path %s: %w", path, err)
		}
		defer unix.Close(fd)
		rules = append(rules, landlockRule{fd: fd, access: llReadFile | llReadDir, what: path})
	}
	for _, path := range opts.WritablePaths {
		fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("writable path %s: %w", path, err)
		}
		defer unix.Close(fd)
		rules = append(rules, landlockRule{fd: fd, access: llReadFile | llReadDir | llWrite, what: path})
	}
	for _, fd := range opts.WritableDirFDs {
		rules = append(rules, landlockRule{fd: fd, access: llReadFile | llReadDir | llWrite, what: fmt.Sprintf("fd %d", fd)})
	}
	return restrictLandlock(abi, rules, opts.ConnectTCPPorts)
}

func installSeccomp(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return fmt.Errorf("seccomp: %w", e)
	}
	if r != 0 {
		// With TSYNC, a positive return is the id of a thread that could not
		// be synchronised; no thread got the filter.
		return fmt.Errorf("seccomp: thread %d could not be synchronised", r)
	}
	return nil
}

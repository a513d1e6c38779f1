package confine

import "golang.org/x/sys/unix"

// The seccomp allow-lists, as data. Read this file to learn every system call
// a confined child may still make. A syscall that has no row is refused with
// the profile's default errno (EPERM); a row with an errno is refused with
// that errno instead; a row with conditions is allowed only when one of its
// alternatives matches, and refused with EPERM otherwise.
//
// Why EPERM and not SECCOMP_RET_KILL_PROCESS by default: the Go standard
// library is written to degrade on EPERM from container filters (copy_file_range,
// splice, faccessat2, pidfd and clone3 probes all fall back), so an unlisted
// call the runtime or stdlib makes on a rare path becomes an error the child
// reports to the monitor rather than an unexplained SIGSYS. A refused attempt
// gains an attacker nothing but the knowledge that it was refused. Calls that
// cannot be legitimate at all — a foreign ABI or x32 numbers — kill the
// process (see bpf.go).

// match holds when (low 32 bits of argument arg) & mask == value.
type match struct {
	arg         int
	mask, value uint32
}

type rule struct {
	name  string
	nr    uintptr
	any   [][]match  // nil: allowed unconditionally; else allowed when every match of one alternative holds
	errno unix.Errno // non-zero: refused with this errno, whatever the arguments
}

func eq(arg int, v uint32) match            { return match{arg, 0xffffffff, v} }
func bitsClear(arg int, bits uint32) match  { return match{arg, bits, 0} }
func bitsSet(arg int, bits uint32) match    { return match{arg, bits, bits} }
func masked(arg int, mask, v uint32) match  { return match{arg, mask, v} }
func oneOf(arg int, vs ...uint32) [][]match { return alts(arg, vs) }

func alts(arg int, vs []uint32) [][]match {
	out := make([][]match, 0, len(vs))
	for _, v := range vs {
		out = append(out, []match{eq(arg, v)})
	}
	return out
}

// ruleEnv carries the values a table needs that are known only at Apply time.
type ruleEnv struct {
	pid     uint32   // getpid() of the confined process: it may signal itself only
	sendFDs []uint32 // if non-empty, the only fds sendmsg/sendto may use
}

const (
	writeOpen   = unix.O_WRONLY | unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC
	createCheck = writeOpen | unix.O_EXCL
	createExcl  = unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY
	setidBits   = unix.S_ISUID | unix.S_ISGID | unix.S_ISVTX
)

// goRuntime is what any long-lived Go process needs once it is running, plus
// I/O on fds it already holds. Nothing here creates a file, a socket or a
// process, changes identity or affects another process.
func goRuntime(env ruleEnv) []rule {
	send := [][]match(nil)
	if len(env.sendFDs) > 0 {
		send = alts(0, env.sendFDs)
	}
	return []rule{
		// I/O on fds the child already holds (client socket, monitor channel,
		// pipes, files opened read-only). Landlock checks rights at open time,
		// so these cannot widen filesystem access.
		{name: "read", nr: unix.SYS_READ},
		{name: "write", nr: unix.SYS_WRITE},
		{name: "readv", nr: unix.SYS_READV},
		{name: "writev", nr: unix.SYS_WRITEV},
		{name: "pread64", nr: unix.SYS_PREAD64}, // also the runtime's cgroup CPU-limit re-reads on fds opened at start
		{name: "pwrite64", nr: unix.SYS_PWRITE64},
		{name: "close", nr: unix.SYS_CLOSE},
		{name: "lseek", nr: unix.SYS_LSEEK},
		{name: "fstat", nr: unix.SYS_FSTAT},
		{name: "newfstatat", nr: unix.SYS_NEWFSTATAT},
		{name: "statx", nr: unix.SYS_STATX},
		{name: "getdents64", nr: unix.SYS_GETDENTS64},
		{name: "readlinkat", nr: unix.SYS_READLINKAT}, // NAR dumps read symlink targets
		// fcntl only for fd flags and CLOEXEC dups (os.NewFile, net.FileConn,
		// SetNonblock); no F_SETOWN/F_SETSIG (signals to others), no locks, no leases.
		{name: "fcntl", nr: unix.SYS_FCNTL, any: oneOf(1, unix.F_GETFD, unix.F_SETFD, unix.F_GETFL, unix.F_SETFL, unix.F_DUPFD_CLOEXEC)},

		// Sockets the child was handed. recvmsg brings fds in from the monitor.
		{name: "recvmsg", nr: unix.SYS_RECVMSG},
		{name: "recvfrom", nr: unix.SYS_RECVFROM},
		// sendmsg can carry SCM_RIGHTS: with Options.SendFDs only on those fds.
		// sendto cannot carry fds but can address an unconnected datagram
		// socket, so it is restricted the same way.
		{name: "sendmsg", nr: unix.SYS_SENDMSG, any: send},
		{name: "sendto", nr: unix.SYS_SENDTO, any: send},
		{name: "shutdown", nr: unix.SYS_SHUTDOWN},
		{name: "getsockname", nr: unix.SYS_GETSOCKNAME}, // net.FileConn
		{name: "getpeername", nr: unix.SYS_GETPEERNAME}, // net.FileConn
		{name: "getsockopt", nr: unix.SYS_GETSOCKOPT},   // net.FileConn (SO_TYPE), SO_PEERCRED

		// Memory. Never executable: the binary's text is all the code there is.
		{name: "mmap", nr: unix.SYS_MMAP, any: [][]match{{bitsClear(2, unix.PROT_EXEC)}}},
		{name: "mprotect", nr: unix.SYS_MPROTECT, any: [][]match{{bitsClear(2, unix.PROT_EXEC)}}}, // runtime sysFault
		{name: "munmap", nr: unix.SYS_MUNMAP},
		{name: "madvise", nr: unix.SYS_MADVISE},
		// The runtime names its mappings (prctl PR_SET_VMA, GODEBUG decoratemappings);
		// every other prctl is refused, PR_SET_DUMPABLE in particular.
		{name: "prctl", nr: unix.SYS_PRCTL, any: [][]match{{eq(0, unix.PR_SET_VMA)}}},

		// Threads and scheduling. clone only with CLONE_THREAD: a new thread of
		// this process, never a new process (a fork would escape nothing, but
		// there is no reason to allow one).
		{name: "clone", nr: unix.SYS_CLONE, any: [][]match{{bitsSet(0, unix.CLONE_THREAD)}}},
		// clone3 passes its flags in memory seccomp cannot read; ENOSYS makes
		// callers (os.StartProcess) fall back to clone, which is checked above.
		{name: "clone3", nr: unix.SYS_CLONE3, errno: unix.ENOSYS},
		{name: "futex", nr: unix.SYS_FUTEX},
		{name: "sched_yield", nr: unix.SYS_SCHED_YIELD},
		{name: "sched_getaffinity", nr: unix.SYS_SCHED_GETAFFINITY}, // runtime GOMAXPROCS updates
		{name: "nanosleep", nr: unix.SYS_NANOSLEEP},
		{name: "clock_nanosleep", nr: unix.SYS_CLOCK_NANOSLEEP},
		{name: "clock_gettime", nr: unix.SYS_CLOCK_GETTIME}, // vDSO fallback
		{name: "gettimeofday", nr: unix.SYS_GETTIMEOFDAY},
		{name: "restart_syscall", nr: unix.SYS_RESTART_SYSCALL},
		{name: "getpid", nr: unix.SYS_GETPID},
		{name: "gettid", nr: unix.SYS_GETTID},
		{name: "getuid", nr: unix.SYS_GETUID},
		{name: "geteuid", nr: unix.SYS_GETEUID},
		{name: "getgid", nr: unix.SYS_GETGID},
		{name: "getegid", nr: unix.SYS_GETEGID},
		{name: "getppid", nr: unix.SYS_GETPPID},
		{name: "uname", nr: unix.SYS_UNAME},
		{name: "getrandom", nr: unix.SYS_GETRANDOM},
		{name: "exit", nr: unix.SYS_EXIT},
		{name: "exit_group", nr: unix.SYS_EXIT_GROUP},

		// Signals: handlers, masks, alternate stacks; and sending only to this
		// process (preemption via tgkill, raise via kill).
		{name: "rt_sigaction", nr: unix.SYS_RT_SIGACTION},
		{name: "rt_sigprocmask", nr: unix.SYS_RT_SIGPROCMASK},
		{name: "rt_sigreturn", nr: unix.SYS_RT_SIGRETURN},
		{name: "sigaltstack", nr: unix.SYS_SIGALTSTACK},
		{name: "tgkill", nr: unix.SYS_TGKILL, any: [][]match{{eq(0, env.pid)}}},
		{name: "kill", nr: unix.SYS_KILL, any: [][]match{{eq(0, env.pid)}}},

		// The netpoller.
		{name: "epoll_create1", nr: unix.SYS_EPOLL_CREATE1},
		{name: "epoll_ctl", nr: unix.SYS_EPOLL_CTL},
		{name: "epoll_pwait", nr: unix.SYS_EPOLL_PWAIT},
		{name: "epoll_pwait2", nr: unix.SYS_EPOLL_PWAIT2},
		{name: "eventfd2", nr: unix.SYS_EVENTFD2}, // netpollBreak
		{name: "pipe2", nr: unix.SYS_PIPE2},

		// Explicitly refused with a distinct errno, though they would be
		// refused anyway: rows here document intent and survive table edits.
		{name: "io_uring_setup", nr: unix.SYS_IO_URING_SETUP, errno: unix.EPERM}, // io_uring bypasses this filter entirely
		{name: "socket", nr: unix.SYS_SOCKET, errno: unix.EPERM},
		{name: "socketpair", nr: unix.SYS_SOCKETPAIR, errno: unix.EPERM},
		{name: "execve", nr: unix.SYS_EXECVE, errno: unix.EPERM},
		{name: "execveat", nr: unix.SYS_EXECVEAT, errno: unix.EPERM},
	}
}

// frontendRules: the worker-protocol server. Reads the store, writes only to
// fds it holds.
func frontendRules(env ruleEnv) []rule {
	return append(goRuntime(env),
		// Read-only opens only: O_WRONLY, O_RDWR, O_CREAT, O_TRUNC refused
		// (O_TMPFILE needs a write mode, so it is refused too).
		rule{name: "openat", nr: unix.SYS_OPENAT, any: [][]match{{bitsClear(2, writeOpen)}}},
		// openat2's flags live in struct open_how, which seccomp cannot read.
		// Allowed because internal/narfs resolves with RESOLVE_BENEATH through
		// it; write-opens through it are stopped by Landlock (the frontend has
		// no write right anywhere), which the tests check.
		rule{name: "openat2", nr: unix.SYS_OPENAT2},
	)
}

// storeProcRules: NAR unpacking into a staging directory.
func storeProcRules(env ruleEnv) []rule {
	return append(goRuntime(env),
		// Read-only, or create a new file exclusively for writing: never
		// reopen, truncate or append to an existing file.
		rule{name: "openat", nr: unix.SYS_OPENAT, any: [][]match{
			{bitsClear(2, writeOpen)},
			{masked(2, createCheck, createExcl)},
		}},
		rule{name: "openat2", nr: unix.SYS_OPENAT2}, // see frontendRules; Landlock bounds writes to the staging dir
		rule{name: "mkdirat", nr: unix.SYS_MKDIRAT},
		rule{name: "symlinkat", nr: unix.SYS_SYMLINKAT},
		// The executable bit of NAR files; never setuid, setgid or sticky.
		rule{name: "fchmod", nr: unix.SYS_FCHMOD, any: [][]match{{bitsClear(1, setidBits)}}},
		rule{name: "ftruncate", nr: unix.SYS_FTRUNCATE},
		rule{name: "fallocate", nr: unix.SYS_FALLOCATE},
		rule{name: "fsync", nr: unix.SYS_FSYNC},
		rule{name: "fdatasync", nr: unix.SYS_FDATASYNC},
	)
}

// fetcherRules: the binary-cache client. The frontend's read-only file
// access (file:// caches, /etc/resolv.conf, CA certificates; Landlock bounds
// where) plus IPv4 and IPv6 sockets for HTTP and DNS. No AF_UNIX socket (no
// host daemon is reachable through one), no listening, no fd passing except
// on the monitor channels (SendFDs).
func fetcherRules(env ruleEnv) []rule {
	var rules []rule
	for _, r := range frontendRules(env) {
		if r.nr != unix.SYS_SOCKET {
			rules = append(rules, r)
		}
	}
	return append(rules,
		rule{name: "socket", nr: unix.SYS_SOCKET, any: [][]match{{eq(0, unix.AF_INET)}, {eq(0, unix.AF_INET6)}}},
		rule{name: "connect", nr: unix.SYS_CONNECT},
		rule{name: "setsockopt", nr: unix.SYS_SETSOCKOPT},
		rule{name: "bind", nr: unix.SYS_BIND, errno: unix.EPERM},
		rule{name: "listen", nr: unix.SYS_LISTEN, errno: unix.EPERM},
	)
}

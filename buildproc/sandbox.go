package buildproc

import (
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"privnix/internal/confine"
	"privnix/ipc"
	"privnix/ipc/msg"
)

// Stages of the set-up, as SandboxFailed.Stage names them.
const (
	StageIdentity    = "identity"     // not root, or a namespace the monitor should have made is missing
	StageOpenSources = "open-sources" // the real store, inputs, sandbox paths, device nodes
	StageStoreView   = "store-view"   // the build's store directory: checks, mount points, handed to the build user
	StageBuildDir    = "build-dir"
	StagePrivate     = "mount-private"
	StageRoot        = "mount-root"
	StageStore       = "mount-store"
	StageInputs      = "mount-inputs"
	StageBuildTop    = "mount-build-dir"
	StageDev         = "mount-dev"
	StageProc        = "mount-proc"
	StageTmp         = "mount-tmp"
	StageEtc         = "etc"
	StageSandboxPath = "sandbox-paths"
	StagePivot       = "pivot-root"
	StageNetwork     = "network"
	StageHostname    = "hostname"
	StageDrop        = "drop-privileges"
	StageFiles       = "write-files"
	StageConfine     = "confine"
	StageStdio       = "stdio"
	StageReady       = "ready"
	StageExec        = "exec"
)

// Error is a failed step of the set-up.
type Error struct {
	Stage string
	Err   error
}

func (e *Error) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Failed turns an error of Setup into the SandboxFailed the monitor gets.
func Failed(err error) *msg.SandboxFailed {
	f := &msg.SandboxFailed{Stage: "internal", Message: err.Error()}
	var se *Error
	if errors.As(err, &se) {
		f.Stage = se.Stage
	}
	var errno unix.Errno
	if errors.As(err, &errno) && uint64(errno) <= 4095 {
		f.Errno = uint64(errno)
	}
	if len(f.Message) > msg.MaxText {
		f.Message = f.Message[:msg.MaxText]
	}
	return f
}

func fail(stage string, err error) error { return &Error{Stage: stage, Err: err} }

func failf(stage, format string, args ...any) error {
	return &Error{Stage: stage, Err: fmt.Errorf(format, args...)}
}

// stagingRoot is where the sandbox root is assembled before pivot_root: the
// host's /tmp, shadowed by a tmpfs only inside the build's mount namespace.
// Everything Setup takes from the host is opened by fd before it is
// shadowed.
const stagingRoot = "/tmp"

// Device nodes bind-mounted from the host into /dev (Nix's list).
var devNodes = []string{"full", "null", "random", "tty", "urandom", "zero"}

// Host files a fixed-output build sees (Nix binds the same), when present.
var networkEtc = []string{"hosts", "resolv.conf", "services"}

// sources are the host objects the sandbox is made of, opened before any
// mount changes.
type sources struct {
	view    int // the store view and the build directory, reopened in our mount namespace
	build   int
	inputs  []input
	sandbox []sandboxSource
	dev     map[string]int
	etc     map[string]int
}

type input struct {
	base   string
	fd     int    // O_PATH, for a directory or regular file
	target string // for a symlink: its target (the symlink is recreated)
	mode   uint32 // S_IFDIR, S_IFREG or S_IFLNK
}

type sandboxSource struct {
	target string
	fd     int
	dir    bool
}

// Setup runs the whole build process after the job arrived, in one ordered
// sequence, and on success never returns: it execs the builder. On failure it
// returns an *Error; the caller reports it with Failed and exits. mon is the
// monitor channel; SandboxReady is sent on it right before execve.
//
// It must run as root in the namespaces the monitor made (see
// docs/internal-apis.md: mount, PID, IPC, UTS, and net unless Network), in
// a binary built without cgo.
func Setup(j *Job, mon *ipc.Conn) error {
	// The thread that drops privileges and confines itself is the one that
	// execs: per-thread state (Landlock before TSYNC, the locked thread's
	// view) must be the builder's. Never unlocked.
	runtime.LockOSThread()

	// 1. We are root, PID 1 of a fresh PID namespace, and not in the host's
	//    mount, IPC, UTS (or, unless Network, network) namespaces: the
	//    monitor must have set the Cloneflags. Checked against the host's
	//    PID 1 through the host's /proc, before it is replaced.
	if err := checkNamespaces(j); err != nil {
		return fail(StageIdentity, err)
	}

	// 2. Open every host object the sandbox is made of by fd, refusing
	//    symlinks in the store: input paths are opened beneath the real
	//    store directory with O_NOFOLLOW, so a path the monitor named is the
	//    path that is mounted. Nothing is mounted from a path after this.
	src, err := openSources(j)
	if err != nil {
		return err
	}

	// 3. The store view: a root-owned, empty directory the monitor made on
	//    the store's filesystem. The mount points of the inputs (and copies
	//    of input symlinks) are created while it is still root's and nobody
	//    else can write it, then it is handed to the build user by fd —
	//    root never writes beneath a directory an unprivileged uid can
	//    write. The outputs do not exist: the builder creates them.
	if err := prepareStoreView(j, src); err != nil {
		return err
	}
	// 4. The build directory: the build user's own, mode 0700, empty.
	if err := checkBuildDir(j); err != nil {
		return err
	}

	// 5. No mount event propagates to or from the host from here on.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(StagePrivate, err)
	}

	// 6. The filesystem view, then the switch into it.
	if j.Sandbox == msg.SandboxOn {
		err = buildRoot(j, src)
	} else {
		err = hostView(j, src)
	}
	if err != nil {
		return err
	}
	src.close()

	// 7. Network: in its own namespace a build has only loopback, which
	//    starts down. Fixed-output builds share the host's.
	if !j.Network {
		if err := loopbackUp(); err != nil {
			return fail(StageNetwork, err)
		}
	}
	// 8. The UTS namespace is the build's: Nix's names.
	if err := unix.Sethostname([]byte("localhost")); err != nil {
		return fail(StageHostname, err)
	}
	if err := unix.Setdomainname([]byte("(none)")); err != nil {
		return fail(StageHostname, err)
	}

	// 9. Become the build user: an empty bounding set on the thread that
	//    execs (so nothing exec'd can regain a capability even without
	//    no_new_privs), no supplementary groups, then the gid, then the uid.
	//    Go's syscall.Setgroups/Setresgid/Setresuid apply to every thread;
	//    leaving uid 0 clears every capability.
	if err := dropBoundingSet(); err != nil {
		return fail(StageDrop, err)
	}
	if err := dropGroups(j); err != nil {
		return fail(StageDrop, err)
	}
	if err := syscall.Setresgid(int(j.GID), int(j.GID), int(j.GID)); err != nil {
		return fail(StageDrop, fmt.Errorf("setresgid: %w", err))
	}
	if err := syscall.Setresuid(int(j.UID), int(j.UID), int(j.UID)); err != nil {
		return fail(StageDrop, fmt.Errorf("setresuid: %w", err))
	}
	if j.UserNS {
		// Never root here: our ambient capabilities go explicitly.
		if err := dropAllCaps(); err != nil {
			return fail(StageDrop, err)
		}
	}

	// 10. Files whose contents the derivation chose (passAsFile,
	//     .attrs.json, .attrs.sh) are written now, as the build user,
	//     beneath the build directory's fd.
	if err := writeFiles(j); err != nil {
		return fail(StageFiles, err)
	}

	// 11. no_new_privs, Landlock scopes (abstract unix sockets and signals
	//     outside the build), the Builder seccomp filter, RLIMIT_CORE 0.
	if _, err := confine.ApplyBuilder(confine.BuilderOptions{Network: j.Network}); err != nil {
		return fail(StageConfine, err)
	}

	// 12. No address space randomisation for the builder, as Nix 2.8 does,
	//     for reproducible builds (the personality survives execve; this
	//     thread is the one that execs).
	if err := noRandomize(); err != nil {
		return fail(StageStdio, err)
	}
	//     stdin /dev/null, stdout and stderr the log pipe. From here our
	//     own stderr is the build log.
	if err := stdio(j.Log); err != nil {
		return fail(StageStdio, err)
	}
	if err := unix.Chdir(j.BuildTop); err != nil {
		return fail(StageStdio, err)
	}
	argv := append([]string{path.Base(j.Builder)}, j.Args...)
	env := make([]string, len(j.Env))
	for i, kv := range j.Env {
		env[i] = kv.Key + "=" + kv.Value
	}

	// 13. The last word on the channel; then every fd above 2 becomes
	//     close-on-exec (the monitor channels already are), and the builder
	//     replaces us. A failed execve is the builder's failure: it goes to
	//     the build log, and the exit status says 127, as a shell would.
	if err := mon.Send(&msg.SandboxReady{}); err != nil {
		return fail(StageReady, err)
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fmt.Fprintf(os.Stderr, "privnix-build: close_range: %v\n", err)
		os.Exit(127)
	}
	err = syscall.Exec(j.Builder, argv, env)
	fmt.Fprintf(os.Stderr, "executing '%s': %v\n", j.Builder, err)
	os.Exit(127)
	return nil
}

// checkNamespaces compares our namespaces with those of the process that
// started us (the monitor), found through the host's /proc (still mounted:
// it shows host pids), since PID 1 of the host may not be readable.
func checkNamespaces(j *Job) error {
	if uint32(os.Geteuid()) != owner(j) || uint32(os.Getuid()) != owner(j) {
		return fmt.Errorf("the build process must start as uid %d (uid %d)", owner(j), os.Getuid())
	}
	network := j.Network
	if os.Getpid() != 1 {
		return fmt.Errorf("not PID 1 of a new PID namespace (pid %d): the monitor must set CLONE_NEWPID", os.Getpid())
	}
	if j.UserNS {
		return checkUserNS()
	}
	parent, err := hostParent()
	if err != nil {
		return err
	}
	kinds := []string{"mnt", "ipc", "uts"}
	if !network {
		kinds = append(kinds, "net")
	}
	for _, k := range kinds {
		mine, err := os.Readlink("/proc/self/ns/" + k)
		if err != nil {
			return err
		}
		theirs, err := os.Readlink("/proc/" + parent + "/ns/" + k)
		if err != nil {
			return err
		}
		if mine == theirs {
			return fmt.Errorf("still in the monitor's %s namespace: the monitor must start the build process in a new one", k)
		}
	}
	return nil
}

// checkUserNS: in a user namespace of an unprivileged monitor, the
// parent's namespaces cannot be read (ptrace access is denied across the
// user namespace). We check we are not in the initial user namespace; that
// the mount, UTS and network namespaces are new is then the kernel's
// check: mounting, setting the hostname and raising loopback need
// capabilities over their namespace, which we only have over those our
// user namespace owns.
func checkUserNS() error {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return err
	}
	if f := strings.Fields(string(b)); len(f) != 3 || f[2] != "1" {
		return fmt.Errorf("uid map %q: not a user namespace mapping one uid", strings.TrimSpace(string(b)))
	}
	return nil
}

// hostParent returns our parent's pid as the host's /proc knows it.
func hostParent() (string, error) {
	self, err := os.Readlink("/proc/self")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile("/proc/" + self + "/status")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			v = strings.TrimSpace(v)
			if n, err := strconv.Atoi(v); err != nil || n <= 0 {
				return "", fmt.Errorf("parent pid %q", v)
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("no PPid in /proc/%s/status", self)
}

func openSources(j *Job) (*sources, error) {
	src := &sources{view: -1, build: -1, dev: map[string]int{}, etc: map[string]int{}}
	ok := false
	defer func() {
		if !ok {
			src.close()
		}
	}()
	// The job's directory fds were opened in the monitor's mount namespace,
	// and mount(2) binds only from mounts of our own. Each is reopened by
	// the path the kernel gives for it (our namespace is a copy of the
	// monitor's, and the per-build tree lies under a root-only parent) and
	// must be the very same inode.
	var err error
	if src.view, err = reopenHere(j.StoreView); err != nil {
		return nil, fail(StageOpenSources, fmt.Errorf("store view: %w", err))
	}
	if src.build, err = reopenHere(j.BuildDir); err != nil {
		return nil, fail(StageOpenSources, fmt.Errorf("build directory: %w", err))
	}
	store, err := unix.Open(j.StoreDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fail(StageOpenSources, fmt.Errorf("store %s: %w", j.StoreDir, err))
	}
	defer unix.Close(store)
	var st unix.Stat_t
	if err := unix.Fstat(store, &st); err != nil {
		return nil, fail(StageOpenSources, err)
	}
	if st.Uid != owner(j) || st.Mode&0o022 != 0 {
		return nil, failf(StageOpenSources, "store %s: owner %d mode %#o; want %d, writable by nobody else", j.StoreDir, st.Uid, st.Mode&0o7777, owner(j))
	}
	seen := map[string]bool{}
	for _, p := range j.InputPaths {
		_, base := p.Split()
		if seen[base] {
			continue
		}
		seen[base] = true
		fd, err := unix.Openat(store, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fail(StageOpenSources, fmt.Errorf("input %s: %w", base, err))
		}
		in := input{base: base, fd: fd}
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, fail(StageOpenSources, err)
		}
		in.mode = st.Mode & unix.S_IFMT
		src.inputs = append(src.inputs, in)
		switch in.mode {
		case unix.S_IFDIR, unix.S_IFREG:
		case unix.S_IFLNK:
			buf := make([]byte, unix.PathMax)
			n, err := unix.Readlinkat(fd, "", buf)
			if err != nil {
				return nil, fail(StageOpenSources, fmt.Errorf("input %s: %w", base, err))
			}
			src.inputs[len(src.inputs)-1].target = string(buf[:n])
		default:
			return nil, failf(StageOpenSources, "input %s: type %#o", base, in.mode)
		}
	}
	if j.Sandbox == msg.SandboxOn {
		for _, sp := range j.SandboxPaths {
			// The admin's sandbox-paths: symlinks in the source are followed,
			// as Nix does.
			fd, err := unix.Open(sp.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				if sp.Optional && errors.Is(err, unix.ENOENT) {
					continue
				}
				return nil, fail(StageOpenSources, fmt.Errorf("sandbox path %s: %w", sp.Source, err))
			}
			if err := unix.Fstat(fd, &st); err != nil {
				unix.Close(fd)
				return nil, fail(StageOpenSources, err)
			}
			src.sandbox = append(src.sandbox, sandboxSource{target: sp.Target, fd: fd, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR})
		}
	}
	for _, n := range devNodes {
		fd, err := unix.Open("/dev/"+n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fail(StageOpenSources, fmt.Errorf("/dev/%s: %w", n, err))
		}
		src.dev[n] = fd
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			return nil, failf(StageOpenSources, "/dev/%s is not a character device", n)
		}
	}
	if j.Network && j.Sandbox == msg.SandboxOn {
		for _, n := range networkEtc {
			fd, err := unix.Open("/etc/"+n, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err == nil {
				src.etc[n] = fd
			}
		}
	}
	ok = true
	return src, nil
}

// reopenHere opens, in our mount namespace, the directory f refers to.
func reopenHere(f *os.File) (int, error) {
	p, err := os.Readlink(procFd(int(f.Fd())))
	if err != nil {
		return -1, err
	}
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", p, err)
	}
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Fstat(fd, &b); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if a.Dev != b.Dev || a.Ino != b.Ino {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not the directory the monitor sent", p)
	}
	return fd, nil
}

func (s *sources) close() {
	for _, fd := range []int{s.view, s.build} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	for _, in := range s.inputs {
		unix.Close(in.fd)
	}
	for _, sp := range s.sandbox {
		unix.Close(sp.fd)
	}
	for _, fd := range s.dev {
		unix.Close(fd)
	}
	for _, fd := range s.etc {
		unix.Close(fd)
	}
	*s = sources{}
}

func prepareStoreView(j *Job, src *sources) error {
	fd := int(j.StoreView.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(StageStoreView, err)
	}
	if st.Uid != owner(j) || st.Mode&0o022 != 0 {
		return failf(StageStoreView, "owner %d mode %#o; want a directory of %d writable by nobody else", st.Uid, st.Mode&0o7777, owner(j))
	}
	if n, err := countEntries(fd); err != nil || n != 0 {
		return failf(StageStoreView, "not empty (%d entries, %v)", n, err)
	}
	// The mount points of file inputs after the first are hard links to the
	// first one's (root's, empty, 0444, and covered by a bind mount like
	// the others): a link allocates no inode and costs a fraction of a
	// create on the store's filesystem, and a chain's build has hundreds.
	firstFile := ""
	for _, in := range src.inputs {
		var err error
		switch in.mode {
		case unix.S_IFDIR:
			err = unix.Mkdirat(fd, in.base, 0o555)
		case unix.S_IFREG:
			if firstFile != "" {
				err = unix.Linkat(fd, firstFile, fd, in.base, 0)
				break
			}
			var f int
			f, err = unix.Openat(fd, in.base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
			if err == nil {
				unix.Close(f)
				firstFile = in.base
			}
		case unix.S_IFLNK:
			err = unix.Symlinkat(in.target, fd, in.base)
		}
		if err != nil {
			return fail(StageStoreView, fmt.Errorf("mount point for %s: %w", in.base, err))
		}
	}
	// Handed over by fd: the builder creates its outputs here.
	if err := unix.Fchown(fd, int(j.UID), int(j.GID)); err != nil {
		return fail(StageStoreView, err)
	}
	if err := unix.Fchmod(fd, 0o755); err != nil {
		return fail(StageStoreView, err)
	}
	return nil
}

func checkBuildDir(j *Job) error {
	fd := int(j.BuildDir.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(StageBuildDir, err)
	}
	if st.Uid != j.UID || st.Mode&0o7777 != 0o700 {
		return failf(StageBuildDir, "owner %d mode %#o; want the build user %d, mode 0700", st.Uid, st.Mode&0o7777, j.UID)
	}
	if n, err := countEntries(fd); err != nil || n != 0 {
		return failf(StageBuildDir, "not empty (%d entries, %v)", n, err)
	}
	return nil
}

// countEntries counts the entries of the directory fd (without . and ..),
// reading through a fresh open of it so that fd's offset is untouched.
func countEntries(fd int) (int, error) {
	d, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	f := os.NewFile(uintptr(d), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return len(names), err
}

func procFd(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// bindFd bind-mounts what fd refers to at target (recursively) and sets
// attrs on the new mount and every mount beneath it; without
// MOUNT_ATTR_RDONLY in attrs the new mounts are made writable (a bind
// inherits the read-only flag of its source, which the unsandboxed view
// sets on every host mount).
func bindFd(fd int, target string, attrs uint64) error {
	if err := unix.Mount(procFd(fd), target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind at %s: %w", target, err)
	}
	if attrs != 0 {
		ma := unix.MountAttr{Attr_set: attrs}
		if attrs&unix.MOUNT_ATTR_RDONLY == 0 {
			ma.Attr_clr = unix.MOUNT_ATTR_RDONLY
		}
		if err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW, &ma); err != nil {
			return fmt.Errorf("mount attributes of %s: %w", target, err)
		}
	}
	return nil
}

const (
	attrRO = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	attrRW = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
)

// mountStore binds the store view at root+StoreDir and each input read-only
// at its own path inside it. The inputs are bound plain, then two
// mount_setattr calls set the attributes of them all: read-only, nosuid and
// nodev on the view and every mount beneath it, then read-write again on
// the view alone (instead of one mount_setattr per input: a chain's build
// has hundreds of inputs). Nothing runs in our mount namespace meanwhile.
func mountStore(j *Job, src *sources, root string) error {
	store := root + j.StoreDir
	if err := os.MkdirAll(store, 0o755); err != nil {
		return fail(StageStore, err)
	}
	if err := bindFd(src.view, store, 0); err != nil {
		return fail(StageStore, err)
	}
	for _, in := range src.inputs {
		if in.mode == unix.S_IFLNK {
			continue // recreated as a symlink in the view
		}
		if err := bindFd(in.fd, store+"/"+in.base, 0); err != nil {
			return fail(StageInputs, err)
		}
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, store, unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW, &unix.MountAttr{Attr_set: attrRO}); err != nil {
		return fail(StageInputs, fmt.Errorf("mount attributes of the inputs: %w", err))
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, store, unix.AT_SYMLINK_NOFOLLOW, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fail(StageStore, fmt.Errorf("making the store view writable: %w", err))
	}
	return nil
}

func mountBuildDir(j *Job, src *sources, root string) error {
	target := root + j.BuildTop
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fail(StageBuildTop, err)
	}
	if err := bindFd(src.build, target, attrRW); err != nil {
		return fail(StageBuildTop, err)
	}
	return nil
}

// mountDev makes a minimal /dev under root: a tmpfs with the host's
// full, null, random, tty, urandom and zero bound in, /dev/shm, a new devpts
// instance and the usual symlinks.
func mountDev(src *sources, root string) error {
	dev := root + "/dev"
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return fail(StageDev, err)
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
		return fail(StageDev, err)
	}
	for _, n := range devNodes {
		f, err := os.OpenFile(dev+"/"+n, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fail(StageDev, err)
		}
		f.Close()
		if err := bindFd(src.dev[n], dev+"/"+n, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC); err != nil {
			return fail(StageDev, err)
		}
	}
	// Nix allows exec from /dev/shm.
	if err := os.Mkdir(dev+"/shm", 0o755); err != nil {
		return fail(StageDev, err)
	}
	if err := unix.Mount("tmpfs", dev+"/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=50%"); err != nil {
		return fail(StageDev, err)
	}
	if err := os.Mkdir(dev+"/pts", 0o755); err != nil {
		return fail(StageDev, err)
	}
	if err := unix.Mount("devpts", dev+"/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fail(StageDev, err)
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, dev+"/"+name); err != nil {
			return fail(StageDev, err)
		}
	}
	return nil
}

// mountProc mounts a procfs of the build's PID namespace at root/proc.
func mountProc(root string) error {
	if err := os.MkdirAll(root+"/proc", 0o555); err != nil {
		return fail(StageProc, err)
	}
	if err := unix.Mount("proc", root+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail(StageProc, err)
	}
	return nil
}

func mountTmp(root string) error {
	if err := os.MkdirAll(root+"/tmp", 0o755); err != nil {
		return fail(StageTmp, err)
	}
	if err := unix.Mount("tmpfs", root+"/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fail(StageTmp, err)
	}
	return nil
}

// buildRoot assembles the sandbox in a tmpfs and pivots into it.
func buildRoot(j *Job, src *sources) error {
	root := stagingRoot
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fail(StageRoot, err)
	}
	// /tmp, /dev and /proc first: a store or build directory beneath one
	// of them (a test store in /tmp) is mounted on top, not shadowed.
	if err := mountTmp(root); err != nil {
		return err
	}
	if err := mountDev(src, root); err != nil {
		return err
	}
	if err := mountProc(root); err != nil {
		return err
	}
	if err := mountStore(j, src, root); err != nil {
		return err
	}
	if err := mountBuildDir(j, src, root); err != nil {
		return err
	}
	if err := writeEtc(j, src, root); err != nil {
		return err
	}
	for _, sp := range src.sandbox {
		target := root + sp.target
		var err error
		if sp.dir {
			err = os.MkdirAll(target, 0o755)
		} else if err = os.MkdirAll(path.Dir(target), 0o755); err == nil {
			var f *os.File
			if f, err = os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o444); err == nil {
				f.Close()
			}
		}
		if err == nil {
			err = bindFd(sp.fd, target, attrRO)
		}
		if err != nil {
			return fail(StageSandboxPath, fmt.Errorf("%s: %w", sp.target, err))
		}
	}
	// The root itself (and /etc in it) is read-only for the builder.
	if err := unix.MountSetattr(unix.AT_FDCWD, root, 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fail(StageRoot, err)
	}
	// pivot_root(".", ".") stacks the old root on the new one; detaching
	// it leaves the new root alone in the namespace.
	if err := unix.Chdir(root); err != nil {
		return fail(StagePivot, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fail(StagePivot, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fail(StagePivot, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fail(StagePivot, err)
	}
	return nil
}

// writeEtc writes Nix's /etc/passwd and /etc/group stubs (2.8 without user
// namespaces: the build runs as the real build uid) and /etc/hosts, or binds
// the host's network files for a fixed-output build.
func writeEtc(j *Job, src *sources, root string) error {
	etc := root + "/etc"
	if err := os.Mkdir(etc, 0o755); err != nil {
		return fail(StageEtc, err)
	}
	files := map[string]string{
		"passwd": fmt.Sprintf("root:x:0:0:Nix build user:%s:/noshell\nnixbld:x:%d:%d:Nix build user:%s:/noshell\nnobody:x:65534:65534:Nobody:/:/noshell\n",
			j.BuildTop, j.UID, j.GID, j.BuildTop),
		"group": fmt.Sprintf("root:x:0:\nnixbld:!:%d:\nnogroup:x:65534:\n", j.GID),
	}
	if !j.Network {
		files["hosts"] = "127.0.0.1 localhost\n::1 localhost\n"
	}
	for name, content := range files {
		if err := os.WriteFile(etc+"/"+name, []byte(content), 0o444); err != nil {
			return fail(StageEtc, err)
		}
	}
	for name, fd := range src.etc {
		f, err := os.OpenFile(etc+"/"+name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
		if err != nil {
			return fail(StageEtc, err)
		}
		f.Close()
		if err := bindFd(fd, etc+"/"+name, attrRO); err != nil {
			return fail(StageEtc, err)
		}
	}
	return nil
}

// hostView is the unsandboxed view: every host mount read-only and nosuid,
// with the build's store view at the store directory, a private /tmp (the
// build directory directly in it), a private /dev and a new /proc.
func hostView(j *Job, src *sources) error {
	if err := unix.MountSetattr(unix.AT_FDCWD, "/", unix.AT_RECURSIVE,
		&unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID}); err != nil {
		return fail(StageRoot, err)
	}
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fail(StageTmp, err)
	}
	// The store view, at the store's own path (created in the private /tmp
	// when the store lives there).
	if err := mountStore(j, src, ""); err != nil {
		return err
	}
	if err := mountBuildDir(j, src, ""); err != nil {
		return err
	}
	if err := mountDev(src, ""); err != nil {
		return err
	}
	if err := mountProc(""); err != nil {
		return err
	}
	return nil
}

// loopbackUp brings lo up in the build's network namespace.
func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr)
}

// owner is the uid that owns the store and the store view: root, or in a
// user namespace (a monitor that is not root) our own uid, the build's.
func owner(j *Job) uint32 {
	if j.UserNS {
		return j.UID
	}
	return 0
}

// dropGroups empties the supplementary groups. In a user namespace of an
// unprivileged monitor setgroups is denied: the groups stay the monitor's,
// and confine.ApplyBuilder refuses the build if there are any.
func dropGroups(j *Job) error {
	if j.UserNS {
		return nil
	}
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	return nil
}

// dropAllCaps clears the ambient, permitted, effective and inheritable
// capabilities of every thread.
func dropAllCaps() error {
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); e != 0 {
		return fmt.Errorf("clearing the ambient capabilities: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("clearing the capabilities: %w", e)
	}
	return nil
}

// dropBoundingSet empties the bounding set of the calling thread: the one
// Setup locked, which execs the builder. The bounding set is per thread and
// what execve keeps is the calling thread's (every other thread ends), so
// this is the one that counts; the others run only Go's runtime until then
// (nothing of ours execs from them) and get no_new_privs from the builder's
// seccomp filter (TSYNC) before the exec. One raw prctl per capability: Go's
// AllThreadsSyscall would stop and signal every thread for each of them
// (about 40, 3 ms per build).
func dropBoundingSet() error {
	for c := 0; c <= unix.CAP_LAST_CAP+8; c++ {
		_, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
		if e == unix.EINVAL && c > 0 {
			return nil
		}
		if e != 0 {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, e)
		}
	}
	return nil
}

// writeFiles writes the job's files beneath the build directory's fd, as
// the build user: the first chunk of a name creates the file exclusively
// (never following a symlink), later chunks append.
func writeFiles(j *Job) error {
	open := map[string]*os.File{}
	defer func() {
		for _, f := range open {
			f.Close()
		}
	}()
	for _, bf := range j.Files {
		f, ok := open[bf.Name]
		if !ok {
			fd, err := unix.Openat(int(j.BuildDir.Fd()), bf.Name,
				unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err != nil {
				return fmt.Errorf("%s: %w", bf.Name, err)
			}
			f = os.NewFile(uintptr(fd), bf.Name)
			open[bf.Name] = f
		}
		if _, err := f.WriteString(bf.Data); err != nil {
			return err
		}
	}
	for name, f := range open {
		delete(open, name)
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// addrNoRandomize is ADDR_NO_RANDOMIZE of <linux/personality.h>.
const addrNoRandomize = 0x0040000

// noRandomize adds ADDR_NO_RANDOMIZE to the calling thread's personality.
func noRandomize() error {
	cur, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	if e != 0 {
		return fmt.Errorf("personality: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, cur|addrNoRandomize, 0, 0); e != 0 {
		return fmt.Errorf("personality: %w", e)
	}
	return nil
}

// stdio points fds 0, 1 and 2 at /dev/null and the log pipe.
func stdio(log *os.File) error {
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(null)
	if err := unix.Dup3(null, 0, 0); err != nil {
		return err
	}
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(log.Fd()), fd, 0); err != nil {
			return err
		}
	}
	return nil
}

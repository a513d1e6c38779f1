package monitor

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"privnix/internal/sys"
	"privnix/ipc"
)

// Every child is exec'd with this fixed fd layout, an empty environment and
// nothing else open (Go's os/exec passes only stdio and ExtraFiles):
//
//	fd 0, 1  /dev/null
//	fd 2     a pipe the monitor reads: a child's panic or runtime error lands here
//	fd 3     the child's ipc channel to the monitor (SOCK_SEQPACKET)
//	fd 4     the child's log channel to the monitor (SOCK_SEQPACKET, Log messages only)
//
// Children take no flags: their configuration is the first ipc message.
// The layout is ExtraFiles' order in start: ipc first, then log.

// role names a child binary.
type role string

const (
	roleFrontend  role = "frontend"
	roleStoreProc role = "storeproc"
	roleBuild     role = "build" // privnix-build: root, from the build spawner only
	roleFetcher   role = "fetch" // privnix-fetch: the binary-cache client (substitute.go)
)

// binaries holds each child binary opened once at start, so that the monitor
// execs exactly the file it checked, whatever later happens to its path, and so
// that an unprivileged uid needs no search permission on the install directory.
type binaries map[role]*os.File

func openBinaries(dir string, requireRootOwned bool) (binaries, error) {
	b := binaries{}
	for r, name := range map[role]string{roleFrontend: "privnix-frontend", roleStoreProc: "privnix-storeproc", roleBuild: "privnix-build", roleFetcher: "privnix-fetch"} {
		f, err := os.Open(dir + "/" + name)
		if err != nil && (r == roleBuild || r == roleFetcher) {
			continue // no builds (Monitor.startBuild says so), no substitution (startFetcher)
		}
		if err != nil {
			return nil, fmt.Errorf("opening the %s binary: %w", r, err)
		}
		if requireRootOwned {
			if err := checkRootOwned(f); err != nil {
				f.Close()
				return nil, err
			}
		}
		b[r] = f
	}
	return b, nil
}

func checkRootOwned(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return fmt.Errorf("%s must be owned by root and writable by nobody else (uid %d, mode %o)", f.Name(), st.Uid, st.Mode&0o7777)
	}
	return nil
}

// child is one running child process and the monitor's ends of its channels.
type child struct {
	role  role
	uid   uint32
	cmd   *exec.Cmd
	pidfd int
	conn  *ipc.Conn
	logs  *ipc.Conn
	done  chan struct{} // closed when the process has been reaped

	// pidfdMu guards pidfd, which is closed (-1) once the process is
	// reaped: kill must never signal a stale fd number, which may name a
	// newer child by then (kill is called again after a child's end).
	pidfdMu sync.Mutex
}

// spawnSpec says who the child runs as and in which namespaces.
type spawnSpec struct {
	role  role
	uid   uint32 // ignored when the monitor is not root
	asUID bool   // true when the monitor can change uids (it runs as root)
	// build: privnix-build, started as root (it demotes itself) in the
	// namespaces of buildCloneflags(network); only from the build spawner.
	build   bool
	network bool
	userNS  bool // build only: privnixd is not root; see buildUserNS (build_spawn.go)
}

// spawnRequest travels to the spawner thread.
type spawnRequest struct {
	spec  spawnSpec
	reply chan spawnResult
}

type spawnResult struct {
	c   *child
	err error
}

// spawner starts children from one OS thread that never exits: Pdeathsig is
// tied to the thread that created the child, so a child must not outlive the
// monitor because some goroutine's thread went away.
type spawner struct {
	bins binaries
	log  *slog.Logger
	reqs chan spawnRequest
	// noUserNS: the kernel refused us a user namespace once; used only on
	// the spawner thread.
	noUserNS bool
	// keepBounding: this is the build spawner, whose thread keeps the full
	// bounding set (privnix-build must mount and chroot as root); it starts
	// only roleBuild children.
	keepBounding bool
}

func newSpawner(bins binaries, log *slog.Logger) *spawner {
	s := &spawner{bins: bins, log: log, reqs: make(chan spawnRequest)}
	go s.loop()
	return s
}

func (s *spawner) loop() {
	runtime.LockOSThread() // never unlocked: this thread lives as long as the monitor
	if os.Geteuid() == 0 && !s.keepBounding {
		// Children of this thread must never regain a capability, even by
		// exec'ing a setuid file: their bounding set is empty from birth.
		if err := sys.DropBoundingSet(); err != nil {
			s.log.Error("cannot empty the spawner's bounding set; children cannot be started", "err", err)
			for r := range s.reqs {
				r.reply <- spawnResult{nil, err}
			}
		}
	}
	for r := range s.reqs {
		c, err := s.start(r.spec)
		r.reply <- spawnResult{c, err}
	}
}

func (s *spawner) spawn(spec spawnSpec) (*child, error) {
	reply := make(chan spawnResult, 1)
	s.reqs <- spawnRequest{spec, reply}
	r := <-reply
	return r.c, r.err
}

func (s *spawner) start(spec spawnSpec) (*child, error) {
	if spec.build != s.keepBounding || (spec.role == roleBuild) != spec.build {
		return nil, fmt.Errorf("%s is not started by this spawner", spec.role)
	}
	bin, ok := s.bins[spec.role]
	if !ok {
		return nil, fmt.Errorf("no binary for role %s", spec.role)
	}
	ipcMine, ipcTheirs, err := ipc.Pair()
	if err != nil {
		return nil, err
	}
	logMine, logTheirs, err := ipc.Pair()
	if err != nil {
		closeAll(ipcMine, ipcTheirs)
		return nil, err
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		closeAll(ipcMine, ipcTheirs, logMine, logTheirs)
		return nil, err
	}
	pidfd := -1
	cmd := &exec.Cmd{
		Path:        fmt.Sprintf("/proc/self/fd/%d", bin.Fd()),
		Args:        []string{"privnix-" + string(spec.role)},
		Env:         []string{},
		Dir:         "/",
		Stderr:      stderrW,
		ExtraFiles:  []*os.File{ipcTheirs, logTheirs},
		SysProcAttr: s.procAttr(spec, &pidfd),
	}
	err = cmd.Start()
	if err != nil && !spec.asUID && cmd.SysProcAttr.Cloneflags&syscall.CLONE_NEWUSER != 0 {
		// Without root, namespaces need an unprivileged user namespace; where
		// the kernel refuses one, the child runs without namespaces.
		s.log.Warn("no user namespace for an unprivileged child; starting it without namespaces", "err", err)
		s.noUserNS = true
		pidfd = -1
		cmd = &exec.Cmd{Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Dir: cmd.Dir, Stderr: cmd.Stderr,
			ExtraFiles: cmd.ExtraFiles, SysProcAttr: s.procAttr(spec, &pidfd)}
		err = cmd.Start()
	}
	closeAll(ipcTheirs, logTheirs, stderrW)
	if err != nil {
		closeAll(ipcMine, logMine, stderrR)
		return nil, fmt.Errorf("starting %s: %w", spec.role, err)
	}
	c := &child{role: spec.role, uid: spec.uid, cmd: cmd, pidfd: pidfd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		c.pidfdMu.Lock()
		unix.Close(c.pidfd)
		c.pidfd = -1
		c.pidfdMu.Unlock()
		close(c.done)
	}()
	go s.drainStderr(c, stderrR)
	if c.conn, err = ipc.NewConn(ipcMine); err == nil {
		c.logs, err = ipc.NewConn(logMine)
	}
	if err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

// procAttr is the demotion: as root, the child starts as its own uid and gid
// with no supplementary groups, in its own session and PID, IPC and UTS
// namespaces (killing its PID 1 ends everything it started). Without root,
// the child keeps our uid and gets what an unprivileged user may have: a user
// namespace mapping only that uid, and the same other namespaces.
func (s *spawner) procAttr(spec spawnSpec, pidfd *int) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL,
		PidFD:      pidfd,
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
	}
	if spec.build {
		a.Cloneflags = buildCloneflags(spec.network)
		if spec.userNS {
			buildUserNS(a)
		}
		return a
	}
	if spec.asUID {
		a.Credential = &syscall.Credential{Uid: spec.uid, Gid: spec.uid, Groups: []uint32{}}
		return a
	}
	if s.noUserNS {
		a.Cloneflags = 0
		return a
	}
	uid, gid := os.Getuid(), os.Getgid()
	a.Cloneflags |= syscall.CLONE_NEWUSER
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
	a.GidMappingsEnableSetgroups = false
	return a
}

// drainStderr logs what a child writes to fd 2 (normally nothing: a Go panic),
// quoted, one record per line, at most 64 lines.
func (s *spawner) drainStderr(c *child, r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 4096)
	for n := 0; sc.Scan(); n++ {
		if n < 64 {
			s.log.Warn("child stderr", "role", c.role, "pid", c.cmd.Process.Pid, "line", fmt.Sprintf("%q", sc.Text()))
		}
	}
}

// kill ends the child and everything in its PID namespace, and waits for it.
func (c *child) kill() {
	c.sigkill()
	if c.conn != nil {
		c.conn.Close()
	}
	if c.logs != nil {
		c.logs.Close()
	}
	<-c.done
}

// sigkill sends SIGKILL to the child unless it has been reaped already.
func (c *child) sigkill() {
	c.pidfdMu.Lock()
	defer c.pidfdMu.Unlock()
	if c.pidfd >= 0 {
		unix.PidfdSendSignal(c.pidfd, unix.SIGKILL, nil, 0)
	} else if c.cmd.Process != nil {
		c.cmd.Process.Kill() // a no-op once reaped (os.Process knows)
	}
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

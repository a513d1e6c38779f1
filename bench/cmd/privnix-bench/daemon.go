package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"privnix/internal/syncbuf"
)

// The test host's users, created by scripts/setup-test-host.sh.
const (
	clientUser = "privnix-alice"
	buildGroup = "privnix-test-bld"
)

// nixConf is the same for both daemons. Sandboxed builds need a shell inside
// the sandbox: the host's /bin/sh and its libraries are bind-mounted.
// privnixd ignores what it does not implement yet.
const nixConf = `allowed-users = *
trusted-users = root
build-users-group = ` + buildGroup + `
substituters =
require-sigs = false
sandbox = true
sandbox-paths = /bin /usr /lib /lib64
`

// Store is a private store with its directories, shared by one daemon.
type Store struct {
	Root                                        string
	StoreDir, StateDir, LogDir, ConfDir, Socket string
	Home                                        string // the client's HOME
	cred                                        *syscall.Credential
}

func newStore(parent, name string, cred *syscall.Credential) (*Store, error) {
	root, err := os.MkdirTemp(parent, name+"-")
	if err != nil {
		return nil, err
	}
	s := &Store{
		Root:     root,
		StoreDir: filepath.Join(root, "store"),
		StateDir: filepath.Join(root, "var", "nix"),
		LogDir:   filepath.Join(root, "var", "log", "nix"),
		ConfDir:  filepath.Join(root, "etc"),
		Home:     filepath.Join(root, "home"),
		cred:     cred,
	}
	s.Socket = filepath.Join(s.StateDir, "daemon-socket", "socket")
	for _, d := range []string{s.StoreDir, s.StateDir, s.LogDir, s.ConfDir, filepath.Dir(s.Socket), s.Home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for d := root; d != parent; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	if err := os.Chown(s.Home, int(cred.Uid), int(cred.Gid)); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(s.ConfDir, "nix.conf"), []byte(nixConf+substituterConf(root)), 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) env() []string {
	return []string{
		"NIX_STORE_DIR=" + s.StoreDir,
		"NIX_STATE_DIR=" + s.StateDir,
		"NIX_LOG_DIR=" + s.LogDir,
		"NIX_CONF_DIR=" + s.ConfDir,
		"NIX_DAEMON_SOCKET_PATH=" + s.Socket,
	}
}

// remove deletes the store; Nix makes store paths read-only, so their
// directories are made writable first.
func (s *Store) remove() {
	filepath.WalkDir(s.Root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.RemoveAll(s.Root)
}

// Run runs a command as the client user against the store's daemon
// (NIX_REMOTE=daemon) and returns its stdout; the error carries the end of
// its stderr.
func (s *Store) Run(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + s.Home, "NIX_REMOTE=daemon", "USER=" + clientUser}, s.env()...)
	cmd.Dir = s.Home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		why := lastLines(grepLines(errb.String(), "error"), 2)
		if why == "" {
			why = lastLines(errb.String(), 3)
		}
		if k := "failed due to signal 9 (Killed)"; strings.Contains(errb.String(), k) && !strings.Contains(why, k) {
			why += " (a builder " + k + ")" // the chain's first failure, for the retry in runGroup
		}
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(shortArgs(args), " "), err, why)
	}
	return out.String(), nil
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func shortArgs(args []string) []string {
	if len(args) > 6 {
		return append(args[:6:6], fmt.Sprintf("… (%d more)", len(args)-6))
	}
	return args
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, " | ")
	if len(out) > 400 {
		out = out[:400] + "…"
	}
	return out
}

func lookupCred(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %s: %v (run scripts/setup-test-host.sh)", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	gids, err := u.GroupIds()
	if err != nil {
		return nil, err
	}
	var groups []uint32
	for _, g := range gids {
		n, _ := strconv.ParseUint(g, 10, 32)
		groups = append(groups, uint32(n))
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, nil
}

// Daemon is a running nix-daemon or privnixd in a cgroup of its own.
type Daemon struct {
	Name  string
	cmd   *exec.Cmd
	log   *syncbuf.Buffer
	cg    *cgroup // nil when no cgroup2 is available
	done  chan struct{}
	store *Store
}

// startDaemon starts path with args on s inside a fresh cgroup beneath cgRoot
// (when cgRoot is not empty) and waits for its socket.
func startDaemon(name, path string, args []string, s *Store, cgRoot string) (*Daemon, error) {
	os.Remove(s.Socket)
	cmd := exec.Command(path, args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, s.env()...)
	if name == pd {
		// For experiments, e.g. BENCH_PRIVNIXD_ENV="GOMAXPROCS=1 GOGC=200".
		cmd.Env = append(cmd.Env, strings.Fields(os.Getenv("BENCH_PRIVNIXD_ENV"))...)
	}
	log := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d := &Daemon{Name: name, cmd: cmd, log: log, done: make(chan struct{}), store: s}
	if cgRoot != "" {
		cg, err := newCgroup(cgRoot, name)
		if err != nil {
			return nil, err
		}
		d.cg = cg
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = cg.fd
	}
	if err := cmd.Start(); err != nil {
		d.cg.remove()
		return nil, fmt.Errorf("starting %s: %v", path, err)
	}
	go func() { cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(s.Socket); err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			d.Stop()
			return nil, fmt.Errorf("%s exited at start: %s", name, lastLines(log.String(), 5))
		default:
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("%s did not create its socket in 20 s: %s", name, lastLines(log.String(), 5))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM, waits up to 10 s, then kills whatever is left in the
// daemon's cgroup.
func (d *Daemon) Stop() {
	select {
	case <-d.done:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	d.cg.remove()
}

// Exited says how the daemon ended ("" while it runs): a daemon killed in
// the middle of a run makes the rest of its group n/a with this reason.
func (d *Daemon) Exited() string {
	select {
	case <-d.done:
		return fmt.Sprintf("%s exited (%s): %s", d.Name, d.cmd.ProcessState, crashLine(d.log.String()))
	default:
		return ""
	}
}

// crashLine is the line of a log that says why a Go program died (a panic,
// a fatal error, a signal's goroutine dump), else its last line.
func crashLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		for _, p := range []string{"panic: ", "fatal error: ", "SIGQUIT", "SIGABRT", "SIGSEGV"} {
			if strings.HasPrefix(l, p) {
				return l
			}
		}
	}
	return lastLines(log, 1)
}

// CPU is the daemon's process tree's CPU time so far (user+sys), including
// children that have exited; ok is false without a cgroup.
func (d *Daemon) CPU() (time.Duration, bool) {
	if d.cg == nil {
		return 0, false
	}
	return d.cg.usage()
}

// OwnCPU is the CPU time of the daemon process itself (user+sys, without
// children: for privnixd, the monitor), at the kernel's clock-tick resolution.
func (d *Daemon) OwnCPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.PID()))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state): utime is field 14
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// PID is the daemon's own process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// TreePSS is the memory of every process in the daemon's cgroup (or only the
// daemon without one), in bytes: the sum of their PSS (proportional set
// size), so that pages shared by forked children (nix-daemon) or by processes
// of one binary (privnix-frontend) are counted once.
func (d *Daemon) TreePSS() int64 {
	pids := []int{d.PID()}
	if d.cg != nil {
		pids = d.cg.procs()
	}
	var sum int64
	for _, p := range pids {
		sum += procKB(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss") * 1024
	}
	return sum
}

// procStatusKB reads one "kB" field of /proc/PID/status (0 when absent).
func procStatusKB(pid int, field string) int64 {
	return procKB(fmt.Sprintf("/proc/%d/status", pid), field)
}

// procKB reads one "kB" field of a /proc file (0 when absent).
func procKB(file, field string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// rssSampler records the peak tree PSS of a daemon while it runs.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	peak int64
}

func sampleRSS(d *Daemon, every time.Duration) *rssSampler {
	r := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			r.peak = max(r.peak, d.TreePSS())
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
		}
	}()
	return r
}

// Stop ends sampling and returns the peak.
func (r *rssSampler) Stop() int64 {
	close(r.stop)
	<-r.done
	return r.peak
}

// cgroup is a cgroup2 directory (no controllers needed: cpu.stat is always
// there in cgroup2).
type cgroup struct {
	dir string
	fd  int
}

// findCgroup2 returns the cgroup2 mount to use: /sys/fs/cgroup on pure cgroup2
// hosts, /sys/fs/cgroup/unified on hybrid ones, "" if neither.
func findCgroup2() string {
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st syscall.Statfs_t
		if syscall.Statfs(d, &st) == nil && st.Type == 0x63677270 { // CGROUP2_SUPER_MAGIC
			return d // cpu.stat is in every non-root cgroup2 directory
		}
	}
	return ""
}

func newCgroup(parent, name string) (*cgroup, error) {
	dir, err := os.MkdirTemp(parent, name+"-")
	if err != nil {
		return nil, fmt.Errorf("cgroup: %v", err)
	}
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		syscall.Rmdir(dir)
		return nil, fmt.Errorf("cgroup: %v", err)
	}
	return &cgroup{dir: dir, fd: fd}, nil
}

func (c *cgroup) usage() (time.Duration, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, "cpu.stat"))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Duration(n) * time.Microsecond, err == nil
		}
	}
	return 0, false
}

func (c *cgroup) procs() []int {
	var pids []int
	filepath.WalkDir(c.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids
}

// remove kills what is left and removes the cgroup (children first).
func (c *cgroup) remove() {
	if c == nil {
		return
	}
	os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0)
	syscall.Close(c.fd)
	var dirs []string
	filepath.WalkDir(c.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		for try := 0; try < 50; try++ {
			if err := syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

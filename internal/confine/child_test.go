package confine

// The child side of the tests. The test binary re-executes itself (a copy
// that the unprivileged uid can execute) with CONFINE_TEST_CHILD set to a
// JSON childConfig; TestMain then runs runChild instead of the tests. The
// child calls Apply, tries what its profile must refuse or allow, and prints
// one childResult as JSON on stdout.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const childEnv = "CONFINE_TEST_CHILD"

type childConfig struct {
	Mode    string // "frontend", "storeproc", "dirfd", "load", "status"
	Profile Profile
	Opts    Options
	Open    string // world-writable directory (0777) outside every rule, with a 0666 file "existing"
	Staging string // the storeproc's writable directory
	Ports   []int  // fetcher: a loopback TCP port it may connect to, then one it may not
	Seconds float64
}

type childResult struct {
	ApplyErr    string
	ApplyMicros int64
	Status      Report // main goroutine's thread, after Apply
	Other       Report // a second goroutine locked to another thread before Apply
	MainTid     int
	OtherTid    int
	StatusOwner int               // owner uid of /proc/self/status (root when not dumpable)
	Probes      map[string]string // main thread: probe → "ok" or the error
	OtherProbes map[string]string // the other thread
	Load        map[string]int64  // load mode counters
	// Threads created after Apply, each locked by its own goroutine while
	// the others still hold theirs: tid → its probes.
	NewThreads map[int]map[string]string
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

func runChild(spec string) {
	var cfg childConfig
	res := childResult{Probes: map[string]string{}, OtherProbes: map[string]string{}}
	defer func() {
		_ = json.NewEncoder(os.Stdout).Encode(res)
	}()
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		res.ApplyErr = "bad config: " + err.Error()
		return
	}

	// A goroutine on its own OS thread, started before Apply, that waits to
	// be told to probe. Apply must reach its thread too.
	probeOther := make(chan func(), 1)
	otherDone := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		res.OtherTid = unix.Gettid()
		close(ready)
		f := <-probeOther
		f()
		close(otherDone)
	}()
	<-ready

	// Fds opened before Apply, for the dirfd experiment.
	openDir := -1
	if cfg.Open != "" {
		fd, err := unix.Open(cfg.Open, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			res.ApplyErr = "opening test dir: " + err.Error()
			return
		}
		openDir = fd
	}
	if cfg.Mode == "storeproc" {
		fd, err := unix.Open(cfg.Staging, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			res.ApplyErr = "opening staging: " + err.Error()
			return
		}
		cfg.Opts.WritableDirFDs = append(cfg.Opts.WritableDirFDs, fd)
	}

	if cfg.Mode == "dirfd" {
		// Control: before Apply, the 0777 directory is writable through the fd.
		res.Probes["control_before_apply"] = errString(tryOpenat(openDir, "control", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL))
	}
	tidsBefore := map[int]bool{}
	if ents, err := os.ReadDir("/proc/self/task"); err == nil {
		for _, e := range ents {
			var tid int
			fmt.Sscan(e.Name(), &tid)
			tidsBefore[tid] = true
		}
	}

	runtime.LockOSThread()
	start := time.Now()
	err := Apply(cfg.Profile, cfg.Opts)
	res.ApplyMicros = time.Since(start).Microseconds()
	res.MainTid = unix.Gettid()
	if err != nil {
		res.ApplyErr = err.Error()
		return
	}
	if res.MainTid == res.OtherTid {
		res.ApplyErr = "test bug: both goroutines on one thread"
		return
	}
	res.Status, err = Status()
	if err != nil {
		res.Probes["status"] = errString(err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/status", &st); err == nil {
		res.StatusOwner = int(st.Uid)
	} else {
		res.Probes["stat_status"] = errString(err)
	}

	common := func(p map[string]string) {
		p["open_write_tmp"] = errString(tryOpen(filepath.Join(os.TempDir(), fmt.Sprintf("confine-%d-%d", os.Getpid(), unix.Gettid())), unix.O_WRONLY|unix.O_CREAT))
		p["read_passwd"] = errString(tryRead("/etc/passwd"))
		p["read_hostname"] = errString(tryRead("/etc/hostname"))
		p["socket_unix"] = errString(trySocket())
		if cfg.Open != "" {
			p["open_create_open_dir"] = errString(tryOpen(filepath.Join(cfg.Open, "new"), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL))
		}
	}

	// Tell the other thread to probe, and wait for it.
	probeOther <- func() {
		var err error
		res.Other, err = Status()
		if err != nil {
			res.OtherProbes["status"] = errString(err)
		}
		if tid := unix.Gettid(); tid != res.OtherTid {
			res.OtherProbes["tid"] = fmt.Sprintf("moved from %d to %d", res.OtherTid, tid)
		}
		common(res.OtherProbes)
	}
	<-otherDone

	p := res.Probes
	common(p)
	switch cfg.Mode {
	case "frontend", "storeproc", "fetcher":
		probeForbidden(p, cfg)
		res.NewThreads = probeNewThreads(tidsBefore)
	}
	switch cfg.Mode {
	case "storeproc":
		probeStoreProc(p, cfg)
	case "fetcher":
		p["connect_allowed_port"] = errString(tryConnect(unix.AF_INET, cfg.Ports[0]))
		p["connect_other_port"] = errString(tryConnect(unix.AF_INET, cfg.Ports[1]))
		p["socket_inet6"] = errString(tryConnect(unix.AF_INET6, -1))
		p["bind"] = errString(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
		}())
	case "dirfd":
		// The staging directory has a Landlock rule (by path); the 0777 one
		// does not. Creating beneath the pre-opened fd of the 0777 directory
		// is allowed by the storeproc's seccomp table, so a refusal here is
		// Landlock's, not seccomp's.
		p["create_via_preopened_dirfd"] = errString(tryOpenat(openDir, "via-fd", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL))
		p["create_in_staging_by_path"] = errString(tryOpen(filepath.Join(cfg.Staging, "by-path"), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL))
	case "load":
		res.Load = runLoad(time.Duration(cfg.Seconds * float64(time.Second)))
	case "x32":
		// Must not return: the filter kills the whole process.
		_, _, e := unix.RawSyscall(unix.SYS_GETPID|x32SyscallBitForTest, 0, 0, 0)
		p["x32_getpid"] = errString(errnoOrNil(e))
	}
}

func probeForbidden(p map[string]string, cfg childConfig) {
	existing := filepath.Join(cfg.Open, "existing")
	p["open_rdwr_existing"] = errString(tryOpen(existing, unix.O_RDWR))
	p["open_trunc_existing"] = errString(tryOpen(existing, unix.O_RDONLY|unix.O_TRUNC))
	p["openat2_create"] = errString(func() error {
		fd, err := unix.Openat2(unix.AT_FDCWD, filepath.Join(cfg.Open, "o2"), &unix.OpenHow{Flags: unix.O_WRONLY | unix.O_CREAT | unix.O_CLOEXEC, Mode: 0o644})
		if err == nil {
			unix.Close(fd)
		}
		return err
	}())
	p["socketpair"] = errString(func() error {
		_, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		return err
	}())
	p["io_uring_setup"] = errString(func() error {
		var params [120]byte // struct io_uring_params
		fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params[0])), 0)
		if e != 0 {
			return e
		}
		unix.Close(int(fd))
		return nil
	}())
	p["chmod"] = errString(unix.Chmod(existing, 0o777))
	p["fchmodat2"] = errString(func() error {
		name, _ := unix.BytePtrFromString(existing)
		_, _, e := unix.Syscall6(unix.SYS_FCHMODAT2, ^uintptr(99), uintptr(unsafe.Pointer(name)) /* AT_FDCWD */, 0o777, 0, 0, 0)
		return errnoOrNil(e)
	}())
	p["chown"] = errString(unix.Chown(existing, 0, 0))
	p["execve"] = errString(syscall.Exec("/bin/true", []string{"true"}, nil))
	p["os_exec"] = errString(exec.Command("/bin/true").Run())
	p["set_dumpable"] = errString(unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0))
	p["kill_other"] = errString(unix.Kill(-1, 0))
	p["ptrace_traceme"] = errString(func() error {
		_, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		return errnoOrNil(e)
	}())
	p["unshare_user"] = errString(unix.Unshare(unix.CLONE_NEWUSER))
	p["mount"] = errString(unix.Mount("none", cfg.Open, "tmpfs", 0, ""))
	p["setuid_raw"] = errString(func() error {
		_, _, e := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0)
		return errnoOrNil(e)
	}())
	p["mmap_exec"] = errString(func() error {
		b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err == nil {
			unix.Munmap(b)
		}
		return err
	}())
	p["landlock_create"] = errString(func() error {
		_, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
		return errnoOrNil(e)
	}())
	// fd 3 is one end of a socketpair and the only SendFDs entry; a dup of
	// it is the same socket under another number and must be refused.
	p["sendmsg_allowed_fd"] = errString(unix.Sendmsg(3, []byte("hi"), nil, nil, 0))
	p["sendmsg_other_fd"] = errString(func() error {
		dup, err := unix.FcntlInt(3, unix.F_DUPFD_CLOEXEC, 20)
		if err != nil {
			return fmt.Errorf("dup: %w", err)
		}
		defer unix.Close(dup)
		return unix.Sendmsg(dup, []byte("hi"), nil, nil, 0)
	}())
}

// probeNewThreads locks 8 goroutines to threads at the same time, which
// makes the runtime create threads after Apply, and probes from each thread
// that did not exist before.
func probeNewThreads(before map[int]bool) map[int]map[string]string {
	const n = 8
	var mu sync.Mutex
	out := map[int]map[string]string{}
	var all, done sync.WaitGroup
	all.Add(n)
	done.Add(n)
	for range n {
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			all.Done()
			all.Wait() // every goroutine holds its own thread now
			tid := unix.Gettid()
			if before[tid] {
				return
			}
			p := map[string]string{}
			if r, err := Status(); err != nil {
				p["status"] = errString(err)
			} else {
				p["status"] = fmt.Sprintf("nnp=%v seccomp=%d", r.NoNewPrivs, r.Seccomp)
			}
			p["read_passwd"] = errString(tryRead("/etc/passwd"))
			p["socket_unix"] = errString(trySocket())
			mu.Lock()
			out[tid] = p
			mu.Unlock()
		}()
	}
	done.Wait()
	return out
}

func probeStoreProc(p map[string]string, cfg childConfig) {
	// Writes beneath the staging dir: only what a NAR restore does.
	dfd := cfg.Opts.WritableDirFDs[0]
	p["create_file"] = errString(func() error {
		fd, err := unix.Openat(dfd, "file", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if _, err := unix.Write(fd, []byte("contents\n")); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if err := unix.Fchmod(fd, 0o755); err != nil {
			return fmt.Errorf("fchmod 0755: %w", err)
		}
		if err := unix.Ftruncate(fd, 4); err != nil {
			return fmt.Errorf("ftruncate: %w", err)
		}
		if err := unix.Fallocate(fd, 0, 0, 8192); err != nil {
			return fmt.Errorf("fallocate: %w", err)
		}
		if err := unix.Fchmod(fd, 0o4755); err != unix.EPERM {
			return fmt.Errorf("fchmod 04755: %v, want EPERM", err)
		}
		return nil
	}())
	p["mkdirat"] = errString(unix.Mkdirat(dfd, "dir", 0o755))
	p["symlinkat"] = errString(unix.Symlinkat("/etc/passwd", dfd, "link"))
	p["create_by_path"] = errString(tryOpen(filepath.Join(cfg.Staging, "by-path"), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL))
	p["reopen_for_write"] = errString(tryOpenat(dfd, "file", unix.O_WRONLY))
	p["create_trunc"] = errString(tryOpenat(dfd, "t", unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC))
	p["unlinkat"] = errString(unix.Unlinkat(dfd, "file", 0))
	p["renameat"] = errString(unix.Renameat(dfd, "file", dfd, "moved"))
	p["mknodat_fifo"] = errString(unix.Mknodat(dfd, "fifo", unix.S_IFIFO|0o644, 0))
	p["linkat"] = errString(unix.Linkat(dfd, "file", dfd, "hard", 0))
	p["mkdir_outside"] = errString(unix.Mkdir(filepath.Join(cfg.Open, "d"), 0o755))
}

func errnoOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func tryOpen(path string, flags int) error { return tryOpenat(unix.AT_FDCWD, path, flags) }

func tryOpenat(dirfd int, path string, flags int) error {
	fd, err := unix.Openat(dirfd, path, flags|unix.O_CLOEXEC, 0o644)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func tryRead(path string) error {
	_, err := os.ReadFile(path)
	return err
}

func trySocket() error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// runLoad exercises the runtime under the filter: allocation and GC,
// goroutines on every P, timers and tickers, a tight loop that only async
// preemption (tgkill) can interrupt, and os/signal delivery.
func runLoad(d time.Duration) map[string]int64 {
	out := map[string]int64{}
	deadline := time.Now().Add(d)
	var allocs, ticks, sigs, spins atomic.Int64
	var sink atomic.Pointer[[]byte]

	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, syscall.SIGUSR1)
	defer signal.Stop(sigc)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4*runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				b := make([]byte, 64<<10)
				sink.Store(&b)
				allocs.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() { // no function calls in the loop: only a signal can preempt it
		defer wg.Done()
		var n int64
		for {
			for j := 0; j < 1<<20; j++ {
				n += int64(j)
			}
			select {
			case <-stop:
				spins.Store(n)
				return
			default:
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ticks.Add(1)
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var lost atomic.Int64
	wg.Add(1)
	go func() { // each signal sent to ourselves must arrive before the next is sent
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
				lost.Add(1)
				continue
			}
			select {
			case <-sigc:
				sigs.Add(1)
			case <-time.After(2 * time.Second):
				lost.Add(1)
			}
		}
	}()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	out["gc"] = int64(after.NumGC - before.NumGC)
	out["allocs"] = allocs.Load()
	out["ticks"] = ticks.Load()
	out["signals"] = sigs.Load()
	out["signals_lost"] = lost.Load()
	out["spin_done"] = 1
	_ = spins.Load()
	out["threads"] = int64(countThreads())
	return out
}

func countThreads() int {
	// Landlock may hide /proc; this is informational only.
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return -1
	}
	return len(ents)
}

// tryConnect opens a TCP socket of the family and, for a port >= 0,
// connects it to that loopback port.
func tryConnect(family, port int) error {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil || port < 0 {
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
}

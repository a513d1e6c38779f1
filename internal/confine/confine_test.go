package confine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Unprivileged ids for the children: above every range a distribution hands
// out, and not in /etc/passwd.
const (
	testUID      = 1879048200
	testStoreUID = 1879048201
)

var childBinary string // a copy of the test binary every uid may execute

func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(childEnv); ok {
		runChild(spec)
		os.Exit(0)
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "confine-test-bin-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		if err := os.Chmod(dir, 0o755); err != nil {
			panic(err)
		}
		self, err := os.Executable()
		if err != nil {
			panic(err)
		}
		childBinary = filepath.Join(dir, "confine.test")
		if err := copyFile(self, childBinary, 0o755); err != nil {
			panic(err)
		}
	}
	return m.Run()
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests spawn children under other uids and need root (the project's test hosts run as root)")
	}
}

// testDirs makes a 0777 directory outside every Landlock rule, holding a
// 0666 file, and a 0700 staging directory owned by uid.
func testDirs(t *testing.T, uid int) (open, staging string) {
	t.Helper()
	base := t.TempDir()
	must(t, os.Chmod(filepath.Dir(base), 0o755)) // t.TempDir makes both levels 0700
	must(t, os.Chmod(base, 0o755))
	open = filepath.Join(base, "open")
	must(t, os.Mkdir(open, 0o777))
	must(t, os.Chmod(open, 0o777))
	must(t, os.WriteFile(filepath.Join(open, "existing"), []byte("x"), 0o666))
	must(t, os.Chmod(filepath.Join(open, "existing"), 0o666))
	staging = filepath.Join(base, "staging")
	must(t, os.Mkdir(staging, 0o700))
	must(t, os.Chown(staging, uid, uid))
	return open, staging
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type spawnHow int

const (
	viaSpawn   spawnHow = iota // unprivileged uid, empty bounding set: the production path
	plainStart                 // unprivileged uid, bounding set inherited (full)
	asRoot                     // no Credential: uid 0
	withGroups                 // like viaSpawn, plus a supplementary group
)

// runChildProc starts the test binary in child mode as uid in new PID, mount
// and IPC namespaces (and a network namespace for a storeproc), with fd 3 one
// end of a socketpair, and decodes its report.
func runChildProc(t *testing.T, how spawnHow, uid int, cfg childConfig) childResult {
	t.Helper()
	stdout, stderr, werr := startChildProc(t, how, uid, cfg)
	if werr != nil {
		t.Fatalf("child: %v\nstderr:\n%s\nstdout:\n%s", werr, stderr, stdout)
	}
	var res childResult
	if err := json.Unmarshal(stdout, &res); err != nil {
		t.Fatalf("child report: %v\nstdout: %q\nstderr:\n%s", err, stdout, stderr)
	}
	return res
}

func startChildProc(t *testing.T, how spawnHow, uid int, cfg childConfig) (stdout, stderr []byte, werr error) {
	t.Helper()
	needRoot(t)
	spec, err := json.Marshal(cfg)
	must(t, err)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	mine, theirs := os.NewFile(uintptr(fds[0]), "parent-end"), os.NewFile(uintptr(fds[1]), "child-end")
	defer mine.Close()
	defer theirs.Close()

	cmd := exec.Command(childBinary)
	cmd.Env = []string{childEnv + "=" + string(spec)}
	var outb, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &errb
	cmd.ExtraFiles = []*os.File{theirs}
	flags := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC)
	if cfg.Profile == StoreProc {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	if how != asRoot {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}
	}
	if how == withGroups {
		cmd.SysProcAttr.Credential.Groups = []uint32{100}
	}
	if how == viaSpawn || how == withGroups {
		err = Spawn(cmd)
	} else {
		err = cmd.Start()
	}
	must(t, err)
	theirs.Close()
	timer := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	werr = cmd.Wait()
	return outb.Bytes(), errb.Bytes(), werr
}

func wantProbes(t *testing.T, where string, got map[string]string, want map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: probe %s did not run", where, k)
			continue
		}
		if g != want[k] {
			t.Errorf("%s: %s = %s, want %s", where, k, g, want[k])
		}
	}
}

func checkConfined(t *testing.T, where string, r Report, uid int) {
	t.Helper()
	for i := range 4 {
		if r.Uid[i] != uid || r.Gid[i] != uid {
			t.Errorf("%s: uid %v gid %v, want all %d", where, r.Uid, r.Gid, uid)
			break
		}
	}
	if len(r.Groups) != 0 {
		t.Errorf("%s: groups %v", where, r.Groups)
	}
	if r.CapEff != 0 || r.CapPrm != 0 || r.CapBnd != 0 || r.CapAmb != 0 || r.CapInh != 0 {
		t.Errorf("%s: caps eff=%x prm=%x bnd=%x amb=%x inh=%x", where, r.CapEff, r.CapPrm, r.CapBnd, r.CapAmb, r.CapInh)
	}
	if !r.NoNewPrivs || r.Seccomp != 2 || r.SeccompFilters != 1 {
		t.Errorf("%s: NoNewPrivs=%v Seccomp=%d filters=%d", where, r.NoNewPrivs, r.Seccomp, r.SeccompFilters)
	}
}

// checkNewThreads: threads the runtime created after Apply inherited both
// the seccomp filter and the Landlock domain.
func checkNewThreads(t *testing.T, res childResult) {
	t.Helper()
	if len(res.NewThreads) == 0 {
		t.Fatal("no thread was created after Apply; the probe proves nothing")
	}
	t.Logf("%d threads created after Apply probed", len(res.NewThreads))
	for tid, p := range res.NewThreads {
		wantProbes(t, fmt.Sprintf("thread %d created after Apply", tid), p, map[string]string{
			"status":      "nnp=true seccomp=2",
			"read_passwd": "EACCES",
			"socket_unix": "EPERM",
		})
	}
}

// What both profiles must refuse or allow, on every thread.
var commonWant = map[string]string{
	"open_write_tmp":       "EPERM",  // seccomp: write flags on openat
	"read_passwd":          "EACCES", // Landlock: not beneath a read-only path
	"read_hostname":        "ok",     // a read-only path
	"socket_unix":          "EPERM",
	"open_create_open_dir": "EPERM", // seccomp for the frontend; see the storeproc's own table
}

var forbiddenWant = map[string]string{
	"open_rdwr_existing":  "EPERM",
	"open_trunc_existing": "EPERM",
	"openat2_create":      "EACCES", // not inspectable by seccomp: Landlock refuses
	"socketpair":          "EPERM",
	"io_uring_setup":      "EPERM",
	"chmod":               "EPERM",
	"fchmodat2":           "EPERM",
	"chown":               "EPERM",
	"execve":              "EPERM",
	"set_dumpable":        "EPERM",
	"kill_other":          "EPERM",
	"ptrace_traceme":      "EPERM",
	"unshare_user":        "EPERM",
	"mount":               "EPERM",
	"setuid_raw":          "EPERM",
	"mmap_exec":           "EPERM",
	"landlock_create":     "EPERM",
	"sendmsg_allowed_fd":  "ok",
	"sendmsg_other_fd":    "EPERM",
}

func TestFrontend(t *testing.T) {
	open, _ := testDirs(t, testUID)
	res := runChildProc(t, viaSpawn, testUID, childConfig{
		Mode: "frontend", Profile: Frontend, Open: open,
		Opts: Options{ReadOnlyPaths: []string{"/etc/hostname", "/proc/self"}, SendFDs: []int{3}},
	})
	if res.ApplyErr != "" {
		t.Fatalf("Apply: %s", res.ApplyErr)
	}
	t.Logf("Apply took %d µs; main thread %d, other thread %d", res.ApplyMicros, res.MainTid, res.OtherTid)
	checkConfined(t, "main thread", res.Status, testUID)
	checkConfined(t, "other thread", res.Other, testUID)
	if res.StatusOwner != 0 {
		t.Errorf("/proc/self/status owned by %d: process still dumpable", res.StatusOwner)
	}
	wantProbes(t, "main thread", res.Probes, commonWant)
	wantProbes(t, "other thread", res.OtherProbes, commonWant)
	wantProbes(t, "main thread", res.Probes, forbiddenWant)
	if g := res.Probes["os_exec"]; g == "ok" {
		t.Errorf("os/exec of /bin/true succeeded")
	}
	checkNewThreads(t, res)
	if _, err := os.Stat(filepath.Join(open, "o2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("openat2 left a file behind: %v", err)
	}
	if ents, _ := os.ReadDir(open); len(ents) != 1 {
		t.Errorf("the open directory changed: %v", ents)
	}
}

func TestStoreProc(t *testing.T) {
	open, staging := testDirs(t, testStoreUID)
	res := runChildProc(t, viaSpawn, testStoreUID, childConfig{
		Mode: "storeproc", Profile: StoreProc, Open: open, Staging: staging,
		Opts: Options{ReadOnlyPaths: []string{"/etc/hostname", "/proc/self"}, SendFDs: []int{3}},
	})
	if res.ApplyErr != "" {
		t.Fatalf("Apply: %s", res.ApplyErr)
	}
	t.Logf("Apply took %d µs", res.ApplyMicros)
	checkConfined(t, "main thread", res.Status, testStoreUID)
	checkConfined(t, "other thread", res.Other, testStoreUID)
	checkNewThreads(t, res)
	storeCommon := map[string]string{}
	for k, v := range commonWant {
		storeCommon[k] = v
	}
	storeCommon["open_create_open_dir"] = "EACCES" // seccomp allows O_CREAT|O_EXCL|O_WRONLY here; Landlock refuses
	wantProbes(t, "main thread", res.Probes, storeCommon)
	wantProbes(t, "other thread", res.OtherProbes, storeCommon)
	wantProbes(t, "main thread", res.Probes, forbiddenWant)
	wantProbes(t, "main thread", res.Probes, map[string]string{
		"create_file":      "ok",
		"mkdirat":          "ok",
		"symlinkat":        "ok",
		"create_by_path":   "ok",
		"reopen_for_write": "EPERM",
		"create_trunc":     "EPERM",
		"unlinkat":         "EPERM",
		"renameat":         "EPERM",
		"mknodat_fifo":     "EPERM",
		"linkat":           "EPERM",
		"mkdir_outside":    "EACCES", // mkdirat is in the table; Landlock refuses
	})
	st, err := os.Lstat(filepath.Join(staging, "file"))
	must(t, err)
	if st.Mode() != 0o755 || st.Size() != 8192 {
		t.Errorf("staged file: mode %v size %d, want -rwxr-xr-x 8192", st.Mode(), st.Size())
	}
	if st.Sys().(*syscall.Stat_t).Uid != testStoreUID {
		t.Errorf("staged file owned by %d", st.Sys().(*syscall.Stat_t).Uid)
	}
	if target, err := os.Readlink(filepath.Join(staging, "link")); err != nil || target != "/etc/passwd" {
		t.Errorf("staged symlink: %q, %v", target, err)
	}
	if ents, _ := os.ReadDir(open); len(ents) != 1 {
		t.Errorf("the open directory changed: %v", ents)
	}
}

// The fetcher: the frontend's refusals, plus IPv4/IPv6 sockets, connect
// only to the ports it was given (Landlock ABI >= 4), no bind.
func TestFetcher(t *testing.T) {
	open, _ := testDirs(t, testUID)
	var ports []int
	for range 2 { // raw sockets: package net would make this test binary link cgo
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		must(t, err)
		defer unix.Close(fd)
		must(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
		must(t, unix.Listen(fd, 4))
		sa, err := unix.Getsockname(fd)
		must(t, err)
		ports = append(ports, sa.(*unix.SockaddrInet4).Port)
	}
	res := runChildProc(t, viaSpawn, testUID, childConfig{
		Mode: "fetcher", Profile: Fetcher, Open: open, Ports: ports,
		Opts: Options{ReadOnlyPaths: []string{"/etc/hostname", "/proc/self"}, SendFDs: []int{3}, ConnectTCPPorts: []uint16{uint16(ports[0])}},
	})
	if res.ApplyErr != "" {
		t.Fatalf("Apply: %s", res.ApplyErr)
	}
	checkConfined(t, "main thread", res.Status, testUID)
	checkConfined(t, "other thread", res.Other, testUID)
	wantProbes(t, "main thread", res.Probes, commonWant)
	wantProbes(t, "other thread", res.OtherProbes, commonWant)
	wantProbes(t, "main thread", res.Probes, forbiddenWant)
	other := "EACCES" // Landlock's TCP connect rule
	if landlockABI() < 4 {
		other = "ok" // no network rights in this kernel's Landlock: the port list cannot be enforced
	}
	wantProbes(t, "main thread", res.Probes, map[string]string{
		"connect_allowed_port": "ok",
		"connect_other_port":   other,
		"socket_inet6":         "ok",
		"bind":                 "EPERM",
	})
}

// TestLandlockDirFDNoExemption records the finding in landlock.go: a
// directory fd opened before landlock_restrict_self gives no right to create
// beneath it.
func TestLandlockDirFDNoExemption(t *testing.T) {
	open, staging := testDirs(t, testStoreUID)
	res := runChildProc(t, viaSpawn, testStoreUID, childConfig{
		Mode: "dirfd", Profile: StoreProc, Open: open, Staging: staging,
		Opts: Options{ReadOnlyPaths: []string{"/proc/self"}, WritablePaths: []string{staging}},
	})
	if res.ApplyErr != "" {
		t.Fatalf("Apply: %s", res.ApplyErr)
	}
	wantProbes(t, "dirfd", res.Probes, map[string]string{
		"control_before_apply":       "ok",
		"create_via_preopened_dirfd": "EACCES",
		"create_in_staging_by_path":  "ok",
	})
}

func TestRuntimeUnderFilter(t *testing.T) {
	res := runChildProc(t, viaSpawn, testUID, childConfig{
		Mode: "load", Profile: Frontend, Seconds: 3,
		Opts: Options{ReadOnlyPaths: []string{"/etc/hostname", "/proc/self"}},
	})
	if res.ApplyErr != "" {
		t.Fatalf("Apply: %s", res.ApplyErr)
	}
	t.Logf("load: %v", res.Load)
	for _, k := range []string{"gc", "allocs", "ticks", "signals", "spin_done"} {
		if res.Load[k] < 1 {
			t.Errorf("load counter %s = %d", k, res.Load[k])
		}
	}
	if res.Load["gc"] < 10 {
		t.Errorf("only %d GCs in 3 s", res.Load["gc"])
	}
	if res.Load["signals_lost"] != 0 {
		t.Errorf("%d SIGUSR1 sent to self not delivered", res.Load["signals_lost"])
	}
}

func TestRefusesPrivileged(t *testing.T) {
	opts := Options{ReadOnlyPaths: []string{"/etc/hostname"}}
	for _, tc := range []struct {
		name string
		how  spawnHow
		want string
	}{
		{"root", asRoot, "uid [0 0 0 0]"},
		{"bounding set", plainStart, "bounding set"},
		{"groups", withGroups, "supplementary groups [100]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runChildProc(t, tc.how, testUID, childConfig{Mode: "status", Profile: Frontend, Opts: opts})
			if !strings.Contains(res.ApplyErr, tc.want) || !strings.Contains(res.ApplyErr, ErrPrivileged.Error()) {
				t.Errorf("Apply error %q, want one mentioning %q and %q", res.ApplyErr, tc.want, ErrPrivileged)
			}
		})
	}
}

func TestSpawnRefusesDefeatingAttrs(t *testing.T) {
	for _, a := range []*syscall.SysProcAttr{
		{Pdeathsig: syscall.SIGKILL},
		{Cloneflags: unix.CLONE_NEWUSER},
	} {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = a
		if err := Spawn(cmd); err == nil {
			_ = cmd.Wait()
			t.Errorf("Spawn with %+v succeeded", a)
		}
	}
}

// TestApplyCost spawns a series of frontends and reports how long Apply took
// in each (it runs in the child, so process start is not counted).
func TestApplyCost(t *testing.T) {
	var us []int64
	for range 10 {
		res := runChildProc(t, viaSpawn, testUID, childConfig{
			Mode: "status", Profile: Frontend,
			Opts: Options{ReadOnlyPaths: []string{"/etc/hostname"}},
		})
		if res.ApplyErr != "" {
			t.Fatalf("Apply: %s", res.ApplyErr)
		}
		us = append(us, res.ApplyMicros)
	}
	slices.Sort(us)
	t.Logf("Apply: min %d µs, median %d µs, max %d µs", us[0], us[len(us)/2], us[len(us)-1])
	if us[len(us)/2] > 50_000 {
		t.Errorf("median Apply %d µs, want a few ms", us[len(us)/2])
	}
}

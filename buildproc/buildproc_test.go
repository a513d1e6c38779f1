package buildproc_test

// These tests play the monitor: they exec the real privnix-build (built
// without cgo) as root, in new namespaces, the way monitor/spawn.go starts
// children (exec through /proc/self/fd/N, empty environment, fds 3 and 4),
// answer its Hello with a BuildJob on a private store in a temporary
// directory, and run a static Go test builder (testdata/builder, placed in an
// input store path) as the build user pnxbld1 of the test host. They need
// root and the build users of scripts/setup-test-host.sh.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"privnix/buildproc"
	"privnix/ipc"
	"privnix/ipc/msg"
)

var bins struct{ build, builder string }

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "buildproc tests run as root: they mount, create namespaces and change uids")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "buildproc-bin-")
	if err != nil {
		panic(err)
	}
	bins.build = filepath.Join(dir, "privnix-build")
	bins.builder = filepath.Join(dir, "builder")
	for out, pkg := range map[string]string{bins.build: "privnix/cmd/privnix-build", bins.builder: "./testdata/builder"} {
		cmd := exec.Command(filepath.Join(runtimeGOROOT(), "bin", "go"), "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	// The pnxbld users are shared with test/integration's builds, where
	// privnixd and nix-daemon kill every process of a build user before and
	// after each build: hold the machine-wide lock they hold.
	lock, err := os.OpenFile(buildUsersLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		panic(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		panic(err)
	}
	code := m.Run()
	lock.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildUsersLock is taken by every test that runs builders as the pnxbld
// users (test/integration/build_test.go names the same file).
const buildUsersLock = "/tmp/privnix-test-build-users.lock"

func runtimeGOROOT() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(out))
}

// hashPart makes a valid store path hash part from a name.
func hashPart(name string) string {
	sum := sha256.Sum256([]byte(name))
	b := make([]byte, msg.HashPartLen)
	for i := range b {
		b[i] = msg.Nix32Alphabet[sum[i]%32]
	}
	return string(b)
}

// buildUser is pnxbld1 and its group, from the test host's passwd.
type buildUser struct{ uid, gid uint32 }

func pnxbld(t *testing.T, n int) buildUser {
	t.Helper()
	u, err := user.Lookup(fmt.Sprintf("pnxbld%d", n))
	if err != nil {
		t.Fatalf("build user pnxbld%d (scripts/setup-test-host.sh): %v", n, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return buildUser{uint32(uid), uint32(gid)}
}

// fixture is a private store with input paths and one build's tree.
type fixture struct {
	t        *testing.T
	dir      string
	store    string
	builder  msg.StorePath // directory with bin/builder
	data     msg.StorePath // directory with "data"
	file     msg.StorePath // a regular file
	link     msg.StorePath // a symlink to data
	out      msg.StorePath
	squat    string // a name the builder creates in its store view
	sentinel string // a root-owned host file outside /tmp
	buildU   buildUser

	buildRoot, view, build string
}

func newFixture(t *testing.T, u buildUser) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, dir: dir, store: filepath.Join(dir, "store"), buildU: u}
	sp := func(name string) msg.StorePath { return msg.StorePath(f.store + "/" + hashPart(name) + "-" + name) }
	f.builder, f.data, f.file, f.link, f.out = sp("builder"), sp("data"), sp("file"), sp("link"), sp("out")
	f.squat = hashPart("squat") + "-squat"
	must(t, os.Mkdir(f.store, 0o755))
	must(t, os.MkdirAll(string(f.builder)+"/bin", 0o755))
	b, err := os.ReadFile(bins.builder)
	must(t, err)
	must(t, os.WriteFile(string(f.builder)+"/bin/builder", b, 0o555))
	must(t, os.Chmod(string(f.builder)+"/bin", 0o555))
	must(t, os.Chmod(string(f.builder), 0o555))
	must(t, os.Mkdir(string(f.data), 0o755))
	must(t, os.WriteFile(string(f.data)+"/data", []byte("input data\n"), 0o444))
	must(t, os.Chmod(string(f.data), 0o555))
	must(t, os.WriteFile(string(f.file), []byte("input file\n"), 0o444))
	must(t, os.Symlink(string(f.data), string(f.link)))
	// A root-owned sentinel outside /tmp (the unsandboxed build gets a
	// private /tmp), in a directory only root can write.
	sdir, err := os.MkdirTemp("/var/tmp", "buildproc-sentinel-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(sdir) })
	must(t, os.Chmod(sdir, 0o755))
	f.sentinel = sdir + "/sentinel"
	must(t, os.WriteFile(f.sentinel, []byte("sentinel\n"), 0o644))
	f.newBuildTree()
	return f
}

// newBuildTree makes what the monitor prepares per build: a root-owned 0700
// parent, the store view (root, 0755, empty) and the build directory (the
// build user's, 0700, empty).
func (f *fixture) newBuildTree() {
	t := f.t
	root, err := os.MkdirTemp(f.dir, "build-")
	must(t, err)
	must(t, os.Chmod(root, 0o700))
	f.buildRoot, f.view, f.build = root, root+"/store", root+"/build"
	must(t, os.Mkdir(f.view, 0o755))
	must(t, os.Mkdir(f.build, 0o700))
	must(t, os.Chown(f.build, int(f.buildU.uid), int(f.buildU.gid)))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// job is a BuildJob running the test builder with the given mode.
func (f *fixture) job(mode string, sandbox uint64, network bool) msg.BuildJob {
	top := "/build"
	if sandbox == msg.SandboxOff {
		top = "/tmp/nix-build-test.drv-0"
	}
	env := msg.KVs{
		{Key: "PATH", Value: "/path-not-set"},
		{Key: "HOME", Value: "/homeless-shelter"},
		{Key: "NIX_STORE", Value: f.store},
		{Key: "NIX_BUILD_CORES", Value: "2"},
		{Key: "NIX_BUILD_TOP", Value: top}, {Key: "TMPDIR", Value: top}, {Key: "TEMPDIR", Value: top},
		{Key: "TMP", Value: top}, {Key: "TEMP", Value: top}, {Key: "PWD", Value: top},
		{Key: "NIX_LOG_FD", Value: "2"},
		{Key: "TERM", Value: "xterm-256color"},
		{Key: "out", Value: string(f.out)},
		{Key: "fooPath", Value: top + "/.attr-foo"},
		{Key: "INPUT_DIR", Value: string(f.data)},
		{Key: "INPUT_FILE", Value: string(f.file)},
		{Key: "SQUAT", Value: f.squat},
		{Key: "HOST_SENTINEL", Value: f.sentinel},
		{Key: "ABSTRACT", Value: "privnix-test-" + filepath.Base(f.dir)},
		{Key: "SANDBOX_FILE", Value: "/usr/lib/tool/sentinel"},
		{Key: "SANDBOX_OPTIONAL", Value: "/opt/absent"},
		{Key: "HOST_TMP", Value: filepath.Dir(bins.build)},
	}
	return msg.BuildJob{
		Builder:    string(f.builder) + "/bin/builder",
		Args:       msg.Strings{mode},
		Env:        env,
		InputPaths: msg.StorePaths{f.builder, f.data, f.file, f.link},
		Outputs:    msg.BuildOutputs{{Name: "out", Path: f.out}},
		StoreDir:   f.store,
		UID:        f.buildU.uid, GID: f.buildU.gid,
		Sandbox:  sandbox,
		Network:  network,
		BuildTop: top,
		Files:    msg.BuildFiles{{Name: ".attr-foo", Data: "passed "}, {Name: ".attr-foo", Data: "as a file"}},
		SandboxPaths: msg.SandboxPathList{
			{Target: "/usr/lib/tool/sentinel", Source: f.sentinel},
			{Target: "/opt/absent", Source: "/nonexistent/privnix", Optional: true},
		},
	}
}

// result is what the monitor learns about one build.
type result struct {
	ready    bool
	failed   *msg.SandboxFailed
	exit     int
	log      string // the builder's stdout and stderr
	stderr   string // the build process's own stderr
	setup    time.Duration
	total    time.Duration
	recvErr  error
	waitErr  error
	childPid int
	pidNS    string // the build's PID namespace, read while it ran
	state    string
}

// spawnOpts changes how the test monitor starts the build process.
type spawnOpts struct {
	cloneflags uintptr // 0: the right ones
	more       []msg.BuildJobMore
	afterReady func(pidfd int, pidNS string) // called once SandboxReady arrived
}

// run starts privnix-build as the monitor would and plays the monitor's side
// of the build channel.
func (f *fixture) run(job msg.BuildJob, o spawnOpts) result {
	t := f.t
	t.Helper()
	var r result
	bin, err := os.Open(bins.build)
	must(t, err)
	defer bin.Close()
	ipcMine, ipcTheirs, err := ipc.Pair()
	must(t, err)
	logMine, logTheirs, err := ipc.Pair()
	must(t, err)
	logR, logW, err := os.Pipe()
	must(t, err)
	view, err := os.OpenFile(f.view, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	must(t, err)
	build, err := os.OpenFile(f.build, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	must(t, err)

	flags := o.cloneflags
	if flags == 0 {
		flags = buildproc.Cloneflags(job.Network)
	}
	var stderr bytes.Buffer
	pidfd := -1
	cmd := &exec.Cmd{
		Path:        fmt.Sprintf("/proc/self/fd/%d", bin.Fd()),
		Args:        []string{"privnix-build"},
		Env:         []string{},
		Dir:         "/",
		Stderr:      &stderr,
		ExtraFiles:  []*os.File{ipcTheirs, logTheirs},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, Cloneflags: flags, PidFD: &pidfd},
	}
	start := time.Now()
	must(t, cmd.Start())
	r.childPid = cmd.Process.Pid
	r.pidNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", r.childPid))
	ipcTheirs.Close()
	logTheirs.Close()
	defer unix.Close(pidfd)
	mon, err := ipc.NewConn(ipcMine)
	must(t, err)
	defer mon.Close()
	logs, err := ipc.NewConn(logMine)
	must(t, err)
	defer logs.Close()
	go func() {
		for {
			if _, _, err := logs.Recv(); err != nil {
				return
			}
		}
	}()
	logDone := make(chan string)
	go func() { b, _ := io.ReadAll(logR); logDone <- string(b) }()
	must(t, mon.SetStoreDir(f.store))

	r.recvErr = func() error {
		m, _, err := mon.Recv()
		if err != nil {
			return err
		}
		if _, ok := m.(*msg.Hello); !ok {
			return fmt.Errorf("first message %v", m.Kind())
		}
		job.More = len(o.more) > 0
		if err := mon.Send(&job, view, build, logW); err != nil {
			return err
		}
		for i, m := range o.more {
			m.More = i < len(o.more)-1
			if err := mon.Send(&m); err != nil {
				return err
			}
		}
		// Our copies: the builder holds the write end now.
		logW.Close()
		view.Close()
		build.Close()
		m, _, err = mon.Recv()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *msg.SandboxReady:
			r.ready = true
			r.setup = time.Since(start)
		case *msg.SandboxFailed:
			r.failed = m
		default:
			return fmt.Errorf("unexpected %v", m.Kind())
		}
		return nil
	}()
	logW.Close()
	view.Close()
	build.Close()
	if r.ready && o.afterReady != nil {
		o.afterReady(pidfd, r.pidNS)
	}
	r.waitErr = cmd.Wait()
	r.total = time.Since(start)
	r.exit = cmd.ProcessState.ExitCode()
	r.state = cmd.ProcessState.String()
	r.log = <-logDone
	logR.Close()
	r.stderr = stderr.String()
	return r
}

// report reads the builder's report from the store view.
type report struct {
	Uid, Gid, Euid, Egid int
	Groups               []int
	Pid                  int
	Env                  []string
	Status               map[string]string
	Hostname             string
	Cwd                  string
	Interfaces           []string
	Passwd, Group, Hosts string
	Files                map[string]string
	Probes               map[string]string
	Procs                []string
	Fds                  []string
}

func (f *fixture) report() report {
	f.t.Helper()
	_, base := f.out.Split()
	b, err := os.ReadFile(f.view + "/" + base + "/report.json")
	must(f.t, err)
	var r report
	must(f.t, json.Unmarshal(b, &r))
	return r
}

func (f *fixture) okBuild(job msg.BuildJob) result {
	f.t.Helper()
	r := f.run(job, spawnOpts{})
	if !r.ready || r.exit != 0 || r.recvErr != nil {
		f.t.Fatalf("build: ready %v failed %+v exit %d (%s) recv %v\nlog:\n%s\nstderr:\n%s", r.ready, r.failed, r.exit, r.state, r.recvErr, r.log, r.stderr)
	}
	return r
}

func checkProbes(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("probe %q missing", k)
		} else if g != w {
			t.Errorf("probe %q: %s, want %s", k, g, w)
		}
	}
}

// snapshot lists every entry beneath dir with its owner, mode, size and
// content hash, for before/after comparisons of trees the builder must not
// change.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %o %d:%d %d %d", p, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink)
		if fi.Mode().IsRegular() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(c))
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", l)
		}
		b.WriteByte('\n')
		return nil
	})
	must(t, err)
	return b.String()
}

// processesOf lists the pids of processes whose real, effective, saved or
// filesystem uid is uid and that live in the PID namespace pidNS (other
// engineers' tests may run processes as the same test build user at the
// same time; only the build's own namespace is this build's).
func processesOf(t *testing.T, uid uint32, pidNS string) []string {
	t.Helper()
	if pidNS == "" {
		t.Fatal("the build's PID namespace was not recorded")
	}
	self, err := os.Readlink("/proc/self/ns/pid")
	must(t, err)
	ents, err := os.ReadDir("/proc")
	must(t, err)
	var mine []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue // gone
		}
		ns, _ := os.Readlink("/proc/" + e.Name() + "/ns/pid")
		ofUID := false
		for _, l := range strings.Split(string(b), "\n") {
			if ids, ok := strings.CutPrefix(l, "Uid:"); ok {
				ofUID = slices.Contains(strings.Fields(ids), strconv.Itoa(int(uid)))
			}
		}
		switch {
		case pidNS != self && ns == pidNS:
			mine = append(mine, e.Name())
		case ofUID && pidNS == self:
			// The build had no PID namespace of its own: every process of
			// the uid counts.
			mine = append(mine, e.Name())
		case ofUID:
			t.Logf("process %s of uid %d outside this build's PID namespace (another test's?)", e.Name(), uid)
		}
	}
	return mine
}

func TestSandboxedBuild(t *testing.T) {
	u := pnxbld(t, 1)
	f := newFixture(t, u)
	before := snapshot(t, f.store)
	sentinel := snapshot(t, filepath.Dir(f.sentinel))
	job := f.job("report", msg.SandboxOn, false)
	r := f.okBuild(job)
	rep := f.report()

	// Identity: the build user, its group only, no capability at all,
	// no_new_privs and a seccomp filter, PID 1 of its own namespace.
	if rep.Uid != int(u.uid) || rep.Euid != int(u.uid) || rep.Gid != int(u.gid) || rep.Egid != int(u.gid) {
		t.Errorf("uid %d/%d gid %d/%d, want %d and %d", rep.Uid, rep.Euid, rep.Gid, rep.Egid, u.uid, u.gid)
	}
	if len(rep.Groups) != 0 || rep.Status["Groups"] != "" {
		t.Errorf("supplementary groups %v (%q)", rep.Groups, rep.Status["Groups"])
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if rep.Status[k] != "0000000000000000" {
			t.Errorf("%s = %s", k, rep.Status[k])
		}
	}
	if rep.Status["NoNewPrivs"] != "1" || rep.Status["Seccomp"] != "2" {
		t.Errorf("NoNewPrivs %s Seccomp %s", rep.Status["NoNewPrivs"], rep.Status["Seccomp"])
	}
	// ASLR off, as in Nix 2.8 (ADDR_NO_RANDOMIZE).
	if rep.Status["personality"] != "00040000" {
		t.Errorf("personality %q", rep.Status["personality"])
	}
	if rep.Pid != 1 || !slices.Equal(rep.Procs, []string{"1"}) {
		t.Errorf("pid %d, processes %v; want 1 alone", rep.Pid, rep.Procs)
	}
	// Only stdin, stdout and stderr: the monitor channels, the job's
	// directories and the build process's own fds did not survive the exec.
	sort.Strings(rep.Fds)
	if !slices.Equal(rep.Fds, []string{"0", "1", "2"}) {
		t.Errorf("builder holds fds %v, want 0 1 2", rep.Fds)
	}
	if rep.Hostname != "localhost" || rep.Cwd != "/build" {
		t.Errorf("hostname %q cwd %q", rep.Hostname, rep.Cwd)
	}
	// Exactly the environment the monitor sent.
	var want []string
	for _, kv := range job.Env {
		want = append(want, kv.Key+"="+kv.Value)
	}
	sort.Strings(want)
	sort.Strings(rep.Env)
	if !slices.Equal(rep.Env, want) {
		t.Errorf("environment\n%q\nwant\n%q", rep.Env, want)
	}
	// Only loopback, and it is up.
	if len(rep.Interfaces) != 1 || !strings.HasPrefix(rep.Interfaces[0], "lo:up") {
		t.Errorf("interfaces %v, want lo up only", rep.Interfaces)
	}
	wantPasswd := fmt.Sprintf("root:x:0:0:Nix build user:/build:/noshell\nnixbld:x:%d:%d:Nix build user:/build:/noshell\nnobody:x:65534:65534:Nobody:/:/noshell\n", u.uid, u.gid)
	if rep.Passwd != wantPasswd || rep.Group != fmt.Sprintf("root:x:0:\nnixbld:!:%d:\nnogroup:x:65534:\n", u.gid) ||
		rep.Hosts != "127.0.0.1 localhost\n::1 localhost\n" {
		t.Errorf("/etc stubs:\n%s%s%s", rep.Passwd, rep.Group, rep.Hosts)
	}
	// The derivation's file, written as the build user before the exec.
	if rep.Files[".attr-foo"] != "passed as a file" {
		t.Errorf("build dir files %q", rep.Files)
	}

	checkProbes(t, rep.Probes, map[string]string{
		"out exists before": "ENOENT",
		"mkdir out":         "ok", "write out": "ok", "write build": "ok", "write tmp": "ok", "write /dev/shm": "ok",
		"write /dev/null": "ok",
		// nowhere else
		"write /": "EROFS", "write /etc": "EROFS", "write /etc/passwd": "EACCES", "write /var/tmp": "ENOENT",
		"write /dev": "EACCES", "write input dir": "EROFS", "write input file": "EROFS", "chmod input": "EROFS",
		"unlink input mount point": "EBUSY", "rename input mount point": "EBUSY", "read input": "ok",
		// the view is the build user's: a squatted name stays in it
		"squat store name": "ok",
		// no setuid or setgid file, however asked; no xattrs, io_uring, privileges
		"chmod 4755": "EPERM", "chmod 2755": "EPERM", "fchmodat 4755": "EPERM", "fchmodat2 6755": "EPERM",
		"fchmod 4755": "EPERM", "create 4755": "EPERM", "mknod 2755": "EPERM", "chmod 0755": "ok",
		"setxattr": "ENOTSUP", "setxattr acl": "ENOTSUP", "io_uring_setup": "EPERM",
		"setuid 0": "EPERM", "mount": "EPERM",
		// links: no hard link to a file of another owner (and inputs are other mounts)
		"hardlink input": "EXDEV", "hardlink input file": "EXDEV", "symlink shadow": "ok", "symlink sentinel": "ok",
		"hardlink sentinel":    "ENOENT",
		"chmod build dir 0777": "ok",
		// no host file
		"stat /etc/shadow": "ENOENT", "read host sentinel": "ENOENT", "write host sentinel": "ENOENT",
		// own network namespace: the host's abstract sockets are not there
		"connect abstract": "ECONNREFUSED", "socketpair": "ok",
		// sandbox-paths: read-only; an optional absent one is skipped
		"read sandbox path": "ok", "write sandbox path": "EROFS", "stat optional sandbox path": "ENOENT",
		"stat host tmp": "ENOENT",
	})
	if !strings.Contains(r.log, "report written") {
		t.Errorf("log %q", r.log)
	}

	// Nothing outside the build's private directories changed.
	if after := snapshot(t, f.store); after != before {
		t.Errorf("the store changed:\n%s\nwas\n%s", after, before)
	}
	if after := snapshot(t, filepath.Dir(f.sentinel)); after != sentinel {
		t.Errorf("the sentinel changed:\n%s", after)
	}
	// The view holds the mount points (root's), the output and the squat
	// (the build user's); the output has no setid file; the parent is still
	// root's 0700, so the open build directory is reachable by nobody.
	_, outBase := f.out.Split()
	ents, err := os.ReadDir(f.view)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	wantNames := []string{}
	for _, p := range []msg.StorePath{f.builder, f.data, f.file, f.link, f.out} {
		_, b := p.Split()
		wantNames = append(wantNames, b)
	}
	wantNames = append(wantNames, f.squat)
	sort.Strings(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Errorf("store view holds %v, want %v", names, wantNames)
	}
	var st unix.Stat_t
	must(t, unix.Lstat(f.view+"/"+outBase, &st))
	if st.Uid != u.uid || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("output owner %d mode %o", st.Uid, st.Mode)
	}
	must(t, unix.Lstat(f.view, &st))
	if st.Uid != u.uid || st.Mode&0o7777 != 0o755 {
		t.Errorf("store view owner %d mode %o", st.Uid, st.Mode&0o7777)
	}
	_, dataBase := f.data.Split()
	must(t, unix.Lstat(f.view+"/"+dataBase, &st))
	if st.Uid != 0 || st.Mode&0o7777 != 0o555 {
		t.Errorf("mount point owner %d mode %o", st.Uid, st.Mode&0o7777)
	}
	filepath.Walk(f.view+"/"+outBase, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Errorf("%s is %v", p, fi.Mode())
		}
		return nil
	})
	// The input symlink is a symlink in the view, not a mount.
	_, linkBase := f.link.Split()
	if l, err := os.Readlink(f.view + "/" + linkBase); err != nil || l != string(f.data) {
		t.Errorf("input symlink in the view: %q %v", l, err)
	}
	// The derivation's file belongs to the build user: written after the drop.
	must(t, unix.Lstat(f.build+"/.attr-foo", &st))
	if st.Uid != u.uid || st.Mode&0o7777 != 0o600 {
		t.Errorf(".attr-foo owner %d mode %o", st.Uid, st.Mode&0o7777)
	}
	must(t, unix.Lstat(f.buildRoot, &st))
	if st.Uid != 0 || st.Mode&0o7777 != 0o700 {
		t.Errorf("build root owner %d mode %o", st.Uid, st.Mode&0o7777)
	}
	if p := processesOf(t, u.uid, r.pidNS); len(p) != 0 {
		t.Errorf("processes of the build user remain: %v", p)
	}
}

func TestUnsandboxedBuild(t *testing.T) {
	u := pnxbld(t, 2)
	f := newFixture(t, u)
	before := snapshot(t, f.store)
	job := f.job("report", msg.SandboxOff, false)
	f.okBuild(job)
	rep := f.report()
	if rep.Uid != int(u.uid) || rep.Gid != int(u.gid) || len(rep.Groups) != 0 || rep.Status["CapEff"] != "0000000000000000" ||
		rep.Status["NoNewPrivs"] != "1" || rep.Status["Seccomp"] != "2" || rep.Pid != 1 {
		t.Errorf("identity %+v %v", rep.Status, rep.Groups)
	}
	if rep.Cwd != job.BuildTop {
		t.Errorf("cwd %q", rep.Cwd)
	}
	// The host's own passwd, read-only; the host sentinel visible but not
	// writable; /tmp, /dev/shm and the build directory private.
	if !strings.Contains(rep.Passwd, fmt.Sprintf("pnxbld2:x:%d:", u.uid)) {
		t.Errorf("not the host's /etc/passwd:\n%s", rep.Passwd)
	}
	checkProbes(t, rep.Probes, map[string]string{
		"out exists before": "ENOENT", "mkdir out": "ok", "write out": "ok", "write build": "ok", "write tmp": "ok",
		"write /dev/shm": "ok", "write /dev/null": "ok",
		"write /": "EROFS", "write /etc": "EROFS", "write /var/tmp": "EROFS", "write /etc/passwd": "EACCES",
		"write input dir": "EROFS", "write input file": "EROFS",
		"read host sentinel": "ok", "write host sentinel": "EROFS", "stat /etc/shadow": "ok",
		"stat host tmp":     "ENOENT", // a private /tmp
		"hardlink sentinel": "EXDEV", "hardlink input": "EXDEV", "symlink sentinel": "ok",
		"chmod 4755": "EPERM", "create 4755": "EPERM", "setxattr": "ENOTSUP", "io_uring_setup": "EPERM",
		"squat store name": "ok",
	})
	if after := snapshot(t, f.store); after != before {
		t.Errorf("the store changed:\n%s", after)
	}
	if b, _ := os.ReadFile(f.sentinel); string(b) != "sentinel\n" {
		t.Errorf("sentinel now %q", b)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(f.sentinel), "pwned")); err == nil {
		t.Error("the builder wrote next to the sentinel")
	}
	if _, err := os.Stat("/pwned"); err == nil {
		t.Error("the builder wrote /pwned")
	}
}

// TestFixedOutputAbstractSocket is CVE-2024-27297: a fixed-output build
// shares the host's network namespace, where a host process listens on an
// abstract unix socket to receive an fd to $out. The build cannot even make
// an AF_UNIX socket (seccomp), and Landlock scopes abstract sockets.
func TestFixedOutputAbstractSocket(t *testing.T) {
	u := pnxbld(t, 3)
	f := newFixture(t, u)
	name := "privnix-test-" + filepath.Base(f.dir)
	l, err := net.Listen("unix", "@"+name)
	must(t, err)
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	// The datagram variant needs no socket(): a socketpair end sends, with
	// SCM_RIGHTS, to an abstract address. Landlock's scope refuses it.
	dg, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@" + name + "-dgram", Net: "unixgram"})
	must(t, err)
	defer dg.Close()
	received := make(chan struct{}, 1)
	go func() {
		buf, oob := make([]byte, 16), make([]byte, 64)
		if _, _, _, _, err := dg.ReadMsgUnix(buf, oob); err == nil {
			received <- struct{}{}
		}
	}()
	job := f.job("report", msg.SandboxOn, true)
	f.okBuild(job)
	rep := f.report()
	checkProbes(t, rep.Probes, map[string]string{"connect abstract": "EPERM", "socketpair": "ok", "sendto abstract dgram": "EPERM"})
	if len(rep.Interfaces) < 2 {
		t.Errorf("a fixed-output build sees the host's interfaces, got %v", rep.Interfaces)
	}
	if strings.Contains(rep.Hosts, "127.0.0.1 localhost\n::1 localhost\n") && rep.Hosts == "127.0.0.1 localhost\n::1 localhost\n" {
		t.Errorf("/etc/hosts is the stub, not the host's")
	}
	// The sandboxed build of TestSandboxedBuild gets ECONNREFUSED for the
	// same name: the listener is in another network namespace. Check it
	// here too, with the listener up.
	f.newBuildTree()
	f.okBuild(f.job("report", msg.SandboxOn, false))
	checkProbes(t, f.report().Probes, map[string]string{"connect abstract": "ECONNREFUSED", "sendto abstract dgram": "ECONNREFUSED"})
	select {
	case <-accepted:
		t.Error("a build connected to the host's abstract socket")
	case <-received:
		t.Error("a build sent a datagram to the host's abstract socket")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestBackgroundProcess: a builder that leaves a process behind. The
// builder is PID 1 of the build's PID namespace: when it exits the kernel
// kills everything left in the namespace before the monitor's wait returns.
func TestBackgroundProcess(t *testing.T) {
	u := pnxbld(t, 4)
	f := newFixture(t, u)
	r := f.okBuild(f.job("background", msg.SandboxOn, false))
	if !strings.Contains(r.log, "left ") {
		t.Fatalf("log %q", r.log)
	}
	if p := processesOf(t, u.uid, r.pidNS); len(p) != 0 {
		t.Errorf("processes of the build user remain after the build: %v", p)
	}
}

// TestKillBuild is the monitor's timeout: it kills the builder (PID 1 of
// the build's PID namespace) through its pidfd while the builder and a
// process it left run; nothing of the build survives the wait.
func TestKillBuild(t *testing.T) {
	u := pnxbld(t, 4)
	f := newFixture(t, u)
	var during []string
	r := f.run(f.job("hang", msg.SandboxOn, false), spawnOpts{afterReady: func(pidfd int, pidNS string) {
		time.Sleep(300 * time.Millisecond)
		during = processesOf(t, u.uid, pidNS)
		must(t, unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0))
	}})
	if !r.ready || r.state != "signal: killed" {
		t.Fatalf("ready %v state %s log %q", r.ready, r.state, r.log)
	}
	if !strings.Contains(r.log, "left ") {
		t.Errorf("log %q", r.log)
	}
	if len(during) < 2 {
		t.Errorf("during the build, %d processes in its namespace, want the builder and the one it left", len(during))
	}
	if p := processesOf(t, u.uid, r.pidNS); len(p) != 0 {
		t.Errorf("processes of the build remain after the kill: %v", p)
	}
}

func TestFailingBuilder(t *testing.T) {
	f := newFixture(t, pnxbld(t, 5))
	r := f.run(f.job("fail", msg.SandboxOn, false), spawnOpts{})
	if !r.ready || r.exit != 3 {
		t.Fatalf("ready %v exit %d failed %+v stderr %s", r.ready, r.exit, r.failed, r.stderr)
	}
	if r.log != "building...\nerror: the frobnicator is broken\n" {
		t.Errorf("log %q", r.log)
	}
	// A builder that does not exist: the sandbox was ready, the exec fails
	// in the build log with status 127.
	f.newBuildTree()
	job := f.job("true", msg.SandboxOn, false)
	job.Builder = f.store + "/nonexistent/bin/sh"
	r = f.run(job, spawnOpts{})
	if !r.ready || r.exit != 127 || !strings.Contains(r.log, "executing '"+job.Builder+"': no such file or directory") {
		t.Errorf("ready %v exit %d log %q", r.ready, r.exit, r.log)
	}
}

// TestJobContinuation: environment, inputs and files split over BuildJobMore
// messages arrive whole (a file bigger than a frame spans several chunks).
func TestJobContinuation(t *testing.T) {
	f := newFixture(t, pnxbld(t, 6))
	job := f.job("report", msg.SandboxOn, false)
	inputs := job.InputPaths
	job.InputPaths = inputs[:1]
	job.Files = nil
	big := strings.Repeat("0123456789abcdef", 6<<10) // 96 KiB
	more := []msg.BuildJobMore{
		{InputPaths: inputs[1:3], Env: msg.KVs{{Key: "extra", Value: "1"}}, Files: msg.BuildFiles{{Name: ".attrs.json", Data: big}}},
		{InputPaths: inputs[3:], Files: msg.BuildFiles{{Name: ".attrs.json", Data: big}, {Name: ".attr-foo", Data: "passed as a file"}}},
	}
	r := f.run(job, spawnOpts{more: more})
	if !r.ready || r.exit != 0 {
		t.Fatalf("ready %v exit %d failed %+v log %s", r.ready, r.exit, r.failed, r.log)
	}
	rep := f.report()
	if rep.Files[".attrs.json"] != big+big || rep.Files[".attr-foo"] != "passed as a file" {
		t.Errorf("files: %d bytes of .attrs.json", len(rep.Files[".attrs.json"]))
	}
	if !slices.Contains(rep.Env, "extra=1") || rep.Probes["read input"] != "ok" {
		t.Errorf("env %v, read input %s", rep.Env, rep.Probes["read input"])
	}
}

// TestSetupRefusals: bad shapes from the monitor are refused before any
// builder runs, with the stage that refused them.
func TestSetupRefusals(t *testing.T) {
	u := pnxbld(t, 7)
	for _, tc := range []struct {
		name  string
		prep  func(f *fixture, j *msg.BuildJob, o *spawnOpts)
		stage string
	}{
		{"store view not empty", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			must(t, os.WriteFile(f.view+"/planted", nil, 0o644))
		}, "store-view"},
		{"store view writable by the build user", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			must(t, os.Chown(f.view, int(u.uid), int(u.gid)))
		}, "store-view"},
		{"build dir of root", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			must(t, os.Chown(f.build, 0, 0))
		}, "build-dir"},
		{"build dir open", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			must(t, os.Chmod(f.build, 0o755))
		}, "build-dir"},
		{"missing input", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			j.InputPaths = append(j.InputPaths, msg.StorePath(f.store+"/"+hashPart("gone")+"-gone"))
		}, "open-sources"},
		{"store writable by others", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			must(t, os.Chmod(f.store, 0o775))
		}, "open-sources"},
		{"output is an input", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			j.Outputs[0].Path = f.data
		}, ""},
		{"no PID namespace", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			o.cloneflags = syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET
		}, "identity"},
		{"no network namespace", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			o.cloneflags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
		}, "identity"},
		{"no mount namespace", func(f *fixture, j *msg.BuildJob, o *spawnOpts) {
			o.cloneflags = syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET
		}, "identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, u)
			j := f.job("report", msg.SandboxOn, false)
			var o spawnOpts
			tc.prep(f, &j, &o)
			r := f.run(j, o)
			if r.ready || r.exit == 0 {
				t.Fatalf("ready %v exit %d", r.ready, r.exit)
			}
			if tc.stage == "" {
				// refused while receiving the job: no SandboxFailed, just exit 1
				if r.failed != nil || !strings.Contains(r.stderr, "also an input") {
					t.Errorf("failed %+v stderr %q", r.failed, r.stderr)
				}
				return
			}
			if r.failed == nil || r.failed.Stage != tc.stage {
				t.Errorf("failed %+v, want stage %s (stderr %q)", r.failed, tc.stage, r.stderr)
			}
			_, base := f.out.Split()
			if _, err := os.Lstat(f.view + "/" + base); err == nil {
				t.Error("an output exists: the builder ran")
			}
			if p := processesOf(t, u.uid, r.pidNS); len(p) != 0 {
				t.Errorf("processes of the build user: %v", p)
			}
		})
	}
}

// TestSetupOverhead measures a whole build of a trivial builder (spawn,
// sandbox, exec, exit) against exec'ing the same builder directly.
func TestSetupOverhead(t *testing.T) {
	u := pnxbld(t, 8)
	f := newFixture(t, u)
	const n = 20
	var setup, total time.Duration
	for i := 0; i < n; i++ {
		f.newBuildTree()
		r := f.run(f.job("true", msg.SandboxOn, false), spawnOpts{})
		if !r.ready || r.exit != 0 {
			t.Fatalf("build %d: ready %v exit %d failed %+v log %s", i, r.ready, r.exit, r.failed, r.log)
		}
		setup += r.setup
		total += r.total
	}
	var offSetup time.Duration
	for i := 0; i < n; i++ {
		f.newBuildTree()
		r := f.run(f.job("true", msg.SandboxOff, false), spawnOpts{})
		if !r.ready || r.exit != 0 {
			t.Fatalf("unsandboxed build %d: ready %v exit %d failed %+v log %s", i, r.ready, r.exit, r.failed, r.log)
		}
		offSetup += r.setup
	}
	var direct time.Duration
	out := filepath.Join(t.TempDir(), "out")
	for i := 0; i < n; i++ {
		os.Remove(out)
		start := time.Now()
		cmd := exec.Command(bins.builder, "true")
		cmd.Env = []string{"out=" + out}
		must(t, cmd.Run())
		direct += time.Since(start)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
	t.Logf("per build, mean of %d: spawn to SandboxReady %.1f ms (sandbox off: %.1f ms); spawn to builder exit %.1f ms; the builder exec'd directly %.1f ms",
		n, ms(setup), ms(offSetup), ms(total), ms(direct))
}

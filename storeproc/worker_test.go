package storeproc

// These tests run the real privnix-storeproc binary as an unprivileged uid,
// started the way the monitor starts it (fd layout, empty environment,
// credentials, namespaces, empty bounding set), and play the monitor.
// They need root.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"privnix/internal/confine"
	"privnix/internal/narfs"
	"privnix/internal/sys"
	"privnix/ipc"
	"privnix/ipc/msg"
	"privnix/nix/nar"

	"privnix/internal/testvectors"
)

var binPath string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "storeproc tests start workers as other uids: run them as root")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "privnix-storeproc-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// The worker's uid must be able to exec it.
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		binPath = filepath.Join(dir, "privnix-storeproc")
		build := exec.Command("go", "build", "-o", binPath, "privnix/cmd/privnix-storeproc")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building privnix-storeproc: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// Worker uids: from the top of privnix's default storeproc range, one per
// worker, as the monitor's pool would give them.
var nextUID atomic.Uint32

func init() { nextUID.Store(1879178000) }

// worker is a running privnix-storeproc and the monitor's side of it.
type worker struct {
	t       *testing.T
	uid     uint32
	cmd     *exec.Cmd
	mon     *ipc.Conn
	logs    *ipc.Conn
	stderr  bytes.Buffer
	dir     string // the staging directory
	outside string // a directory beside it that the worker must never touch
	exited  chan error
}

// startWorker execs the binary as cred (nil: as root) like monitor/spawn.go
// does, from a thread whose bounding set is empty.
func startWorker(t *testing.T, cred *syscall.Credential) *worker {
	t.Helper()
	w := &worker{t: t, exited: make(chan error, 1)}
	if cred != nil {
		w.uid = cred.Uid
	}
	ipcMine, ipcTheirs, err := ipc.Pair()
	must(t, err)
	logMine, logTheirs, err := ipc.Pair()
	must(t, err)
	w.cmd = &exec.Cmd{
		Path:       binPath,
		Args:       []string{"privnix-storeproc"},
		Env:        []string{},
		Dir:        "/",
		Stderr:     &w.stderr,
		ExtraFiles: []*os.File{ipcTheirs, logTheirs},
		SysProcAttr: &syscall.SysProcAttr{
			Credential: cred,
			Setsid:     true,
			Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		},
	}
	err = spawn(w.cmd)
	ipcTheirs.Close()
	logTheirs.Close()
	must(t, err)
	go func() { w.exited <- w.cmd.Wait() }()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.exited
		w.exited <- nil // later waits see the process gone
	})
	w.mon, err = ipc.NewConn(ipcMine)
	must(t, err)
	w.logs, err = ipc.NewConn(logMine)
	must(t, err)
	t.Cleanup(func() { w.mon.Close(); w.logs.Close() })
	must(t, w.mon.SetReadDeadline(time.Now().Add(30*time.Second)))
	// Drain the log channel so the worker never finds it full.
	go func() {
		for {
			m, _, err := w.logs.Recv()
			if err != nil {
				return
			}
			t.Logf("worker log: %+v", m)
		}
	}()
	return w
}

// spawn starts cmd from a throw-away OS thread whose capability bounding set
// was emptied (what the monitor's spawner thread does): the child is born
// with CapBnd 0, as confine.Apply requires.
func spawn(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := sys.DropBoundingSet(); err != nil {
			errc <- err
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

func newUID() *syscall.Credential {
	uid := nextUID.Add(1)
	return &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
}

// stagingDir makes the staging directory the monitor would: mode 0700,
// owned by the worker's uid, beneath a root-owned directory that also holds
// a directory the worker must not write to.
func (w *worker) stagingDir() *os.File {
	w.t.Helper()
	base := w.t.TempDir()
	w.dir = filepath.Join(base, "staging")
	w.outside = filepath.Join(base, "outside")
	must(w.t, os.Mkdir(w.dir, 0o700))
	must(w.t, os.Chown(w.dir, int(w.uid), int(w.uid)))
	must(w.t, os.Mkdir(w.outside, 0o777))
	f, err := os.OpenFile(w.dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	must(w.t, err)
	return f
}

// hello expects the worker's Hello.
func (w *worker) hello() {
	w.t.Helper()
	m, fds, err := w.mon.Recv()
	if err != nil {
		w.t.Fatalf("waiting for Hello: %v (stderr %q)", err, w.stderr.String())
	}
	if _, ok := m.(*msg.Hello); !ok || len(fds) != 0 {
		w.t.Fatalf("first message %v with %d fds, want Hello", m.Kind(), len(fds))
	}
}

// sendJob answers Hello with job, the staging directory and a fresh pipe's
// read end; it returns the write end.
func (w *worker) sendJob(job msg.StoreJob, dir *os.File) *os.File {
	w.t.Helper()
	r, wr, err := os.Pipe()
	must(w.t, err)
	err = w.mon.Send(&job, dir, r)
	dir.Close()
	r.Close() // the worker holds the only read end
	must(w.t, err)
	return wr
}

// answer receives the worker's answer, then requires it to exit with
// status 0 having sent nothing else.
func (w *worker) answer() msg.Message {
	w.t.Helper()
	m, fds, err := w.mon.Recv()
	if err != nil {
		w.t.Fatalf("waiting for the answer: %v (stderr %q)", err, w.stderr.String())
	}
	if len(fds) != 0 {
		w.t.Fatalf("answer %v came with %d fds", m.Kind(), len(fds))
	}
	w.wait(0)
	if m2, _, err := w.mon.Recv(); !errors.Is(err, io.EOF) {
		w.t.Errorf("after the answer: %v, %v; want EOF", m2, err)
	}
	return m
}

// wait requires the worker to exit with status code within 30 s.
func (w *worker) wait(code int) {
	w.t.Helper()
	select {
	case err := <-w.exited:
		w.exited <- err
		got := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			got = ee.ExitCode()
		} else if err != nil {
			w.t.Fatalf("wait: %v", err)
		}
		if got != code {
			w.t.Fatalf("worker exited with %d, want %d (stderr %q)", got, code, w.stderr.String())
		}
	case <-time.After(30 * time.Second):
		w.t.Fatal("worker did not exit")
	}
}

// narJob is a NAR job with narreader's default limits and maxBytes.
func narJob(maxBytes uint64) msg.StoreJob {
	return msg.StoreJob{Format: msg.FormatNAR, MaxBytes: maxBytes, MaxDepth: 256, MaxEntries: 1 << 22, MaxNameLen: 255, MaxTargetLen: 4095}
}

// upload runs one job to its answer: it writes data to the pipe (ignoring
// write errors: a worker may stop reading early) and closes it.
func upload(t *testing.T, job msg.StoreJob, data io.Reader) (msg.Message, *worker) {
	t.Helper()
	w := startWorker(t, newUID())
	w.hello()
	pw := w.sendJob(job, w.stagingDir())
	go func() {
		io.Copy(pw, data)
		pw.Close()
	}()
	return w.answer(), w
}

func wantStaged(t *testing.T, m msg.Message, size uint64) {
	t.Helper()
	s, ok := m.(*msg.Staged)
	if !ok {
		t.Fatalf("answer %#v, want Staged", m)
	}
	if s.NarSize != size || s.Bytes != size {
		t.Fatalf("Staged{NarSize: %d, Bytes: %d}, want %d for both", s.NarSize, s.Bytes, size)
	}
}

func wantRefused(t *testing.T, m msg.Message, class uint64, text string) {
	t.Helper()
	e, ok := m.(*msg.Error)
	if !ok {
		t.Fatalf("answer %#v, want Error", m)
	}
	if e.Class != class || !strings.Contains(e.Message, text) {
		t.Fatalf("Error{%d, %q}, want class %d containing %q", e.Class, e.Message, class, text)
	}
	t.Logf("refused: %s", e.Message)
}

// vectorsDir is ../shared/vectors/nix beside the repository.
func vectorsDir(t *testing.T) string {
	return testvectors.Dir(t)
}

// vector reads a file beneath vectorsDir.
func vector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir(t), name))
	must(t, err)
	return b
}

// narVectors classifies every NAR vector: "" restores identically, anything
// else is the refusal's reason (reasons in storeproc.go), as narreader's
// vector test classifies them.
var narVectors = map[string]string{}

func init() {
	bad := map[string]string{
		"dot.nar":                               `NAR entry named "." or ".."`,
		"dotdot.nar":                            `NAR entry named "." or ".."`,
		"empty.nar":                             "empty NAR entry name",
		"executable-after-contents.nar":         "executable marker after the contents",
		"invalid-tag-instead-of-contents.nar":   "unexpected token",
		"name-after-node.nar":                   "unexpected token",
		"nul-character.nar":                     "NAR entry name contains NUL",
		"regular-one-byte-non-zero-padding.nar": "non-zero padding",
		"regular-one-byte-zero-padding.nar":     "",
		"regular-truncated-padding.nar":         "unexpected end of the upload",
		"slash.nar":                             "NAR entry name contains '/'",
		// Claims a file far larger than the job's MaxBytes.
		"regular-truncated-large-contents.nar": "the upload is larger than the limit",
	}
	for name, want := range bad {
		narVectors["libutil-nars/"+name] = want
		narVectors["libutil-fuzz-nars/"+name] = want
	}
	for _, name := range []string{"case-collision.nar", "case.nar", "empty-dir.nar", "empty-subdir.nar", "simple.nar"} {
		narVectors["libutil-fuzz-nars/"+name] = ""
	}
}

func TestNARVectors(t *testing.T) {
	seen := 0
	for _, dir := range []string{"libutil-nars", "libutil-fuzz-nars"} {
		files, err := filepath.Glob(filepath.Join(vectorsDir(t), dir, "*.nar"))
		must(t, err)
		if len(files) == 0 {
			t.Fatalf("no vectors in %s", dir)
		}
		for _, f := range files {
			name := dir + "/" + filepath.Base(f)
			if _, ok := narVectors[name]; !ok {
				t.Errorf("vector %s is not classified", name)
			}
			seen++
		}
	}
	if seen != len(narVectors) {
		t.Errorf("%d vectors on disk, %d classified", seen, len(narVectors))
	}
	for name, want := range narVectors {
		t.Run(name, func(t *testing.T) {
			data := vector(t, name)
			m, w := upload(t, narJob(1<<30), bytes.NewReader(data))
			if want != "" {
				wantRefused(t, m, msg.ClassPolicy, want)
				return
			}
			wantStaged(t, m, uint64(len(data)))
			var dump bytes.Buffer
			must(t, narfs.DumpPath(&dump, filepath.Join(w.dir, OutName)))
			if !bytes.Equal(dump.Bytes(), data) {
				t.Fatalf("restored tree dumps as %d bytes, the NAR had %d", dump.Len(), len(data))
			}
			w.checkOwned()
		})
	}
}

// checkOwned requires everything beneath the staging directory to belong to
// the worker's uid, and the outside directory to be empty.
func (w *worker) checkOwned() {
	w.t.Helper()
	err := filepath.Walk(w.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != w.uid || st.Gid != w.uid {
			w.t.Errorf("%s owned by %d:%d, want %d", p, st.Uid, st.Gid, w.uid)
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
			w.t.Errorf("%s has mode %v", p, fi.Mode())
		}
		return nil
	})
	must(w.t, err)
	w.checkOutsideEmpty()
}

func (w *worker) checkOutsideEmpty() {
	w.t.Helper()
	ents, err := os.ReadDir(w.outside)
	must(w.t, err)
	if len(ents) != 0 {
		w.t.Errorf("the worker wrote outside its staging directory: %v", ents)
	}
}

// bigNAR is a NAR of a tree with a large file, an executable, a symlink and
// a subdirectory.
func bigNAR(t *testing.T, fileSize int) []byte {
	t.Helper()
	var b bytes.Buffer
	nw := nar.NewWriter(&b)
	big := make([]byte, fileSize)
	_, err := rand.Read(big[:fileSize/2]) // the second half stays zero: narfs leaves holes
	must(t, err)
	steps := []error{
		nw.StartDir(),
		nw.Entry("big"), nw.File(false, uint64(len(big)), bytes.NewReader(big)),
		nw.Entry("bin"), nw.StartDir(),
		nw.Entry("hello"), nw.File(true, uint64(len("#!/bin/sh\n")), strings.NewReader("#!/bin/sh\n")),
		nw.EndDir(),
		nw.Entry("link"), nw.Symlink("bin/hello"),
		nw.EndDir(),
		nw.Close(),
	}
	for _, err := range steps {
		must(t, err)
	}
	return b.Bytes()
}

func TestNARTree(t *testing.T) {
	data := bigNAR(t, 3<<20+17)
	m, w := upload(t, narJob(uint64(len(data))), bytes.NewReader(data))
	wantStaged(t, m, uint64(len(data)))
	var dump bytes.Buffer
	must(t, narfs.DumpPath(&dump, filepath.Join(w.dir, OutName)))
	if !bytes.Equal(dump.Bytes(), data) {
		t.Fatal("restored tree dumps differently")
	}
	w.checkOwned()
}

func TestFlat(t *testing.T) {
	for _, size := range []int{0, 1, flatBufSize, 3*flatBufSize + 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := make([]byte, size)
			_, err := rand.Read(data)
			must(t, err)
			m, w := upload(t, msg.StoreJob{Format: msg.FormatFlat, MaxBytes: uint64(size)}, bytes.NewReader(data))
			wantStaged(t, m, uint64(size))
			out := filepath.Join(w.dir, OutName)
			fi, err := os.Lstat(out)
			must(t, err)
			if fi.Mode() != 0o444 {
				t.Errorf("out has mode %v, want a 0444 regular file", fi.Mode())
			}
			got, err := os.ReadFile(out)
			must(t, err)
			if !bytes.Equal(got, data) {
				t.Errorf("out holds %d bytes differing from the %d sent", len(got), len(data))
			}
			w.checkOwned()
		})
	}
}

// endless is an upload that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestTooLarge(t *testing.T) {
	data := bigNAR(t, 1<<20)
	t.Run("nar over MaxBytes", func(t *testing.T) {
		m, w := upload(t, narJob(uint64(len(data)-1)), bytes.NewReader(data))
		wantRefused(t, m, msg.ClassPolicy, fmt.Sprintf("the upload is larger than the limit of %d bytes", len(data)-1))
		w.checkOutsideEmpty()
	})
	t.Run("nar then garbage", func(t *testing.T) {
		m, _ := upload(t, narJob(1<<30), io.MultiReader(bytes.NewReader(data), strings.NewReader("x")))
		wantRefused(t, m, msg.ClassPolicy, "the NAR is malformed: bytes after the end of the NAR")
	})
	t.Run("nar then endless garbage", func(t *testing.T) {
		m, _ := upload(t, narJob(uint64(len(data))+1<<20), io.MultiReader(bytes.NewReader(data), endless{}))
		wantRefused(t, m, msg.ClassPolicy, "the NAR is malformed")
	})
	t.Run("flat exactly MaxBytes", func(t *testing.T) {
		m, _ := upload(t, msg.StoreJob{Format: msg.FormatFlat, MaxBytes: 1000}, io.LimitReader(endless{}, 1000))
		wantStaged(t, m, 1000)
	})
	t.Run("flat one byte over", func(t *testing.T) {
		m, _ := upload(t, msg.StoreJob{Format: msg.FormatFlat, MaxBytes: 1000}, io.LimitReader(endless{}, 1001))
		wantRefused(t, m, msg.ClassPolicy, "the upload is larger than the limit of 1000 bytes")
	})
	t.Run("flat endless", func(t *testing.T) {
		// The worker stops at 1 MiB + 1 byte and exits; the writer gets EPIPE.
		m, _ := upload(t, msg.StoreJob{Format: msg.FormatFlat, MaxBytes: 1 << 20}, endless{})
		wantRefused(t, m, msg.ClassPolicy, "the upload is larger than the limit")
	})
}

func TestTruncated(t *testing.T) {
	data := bigNAR(t, 100_000)
	for _, n := range []int{0, 7, 8, 100, len(data) / 2, len(data) - 8, len(data) - 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			m, _ := upload(t, narJob(1<<30), bytes.NewReader(data[:n]))
			wantRefused(t, m, msg.ClassPolicy, "unexpected end of the upload")
		})
	}
}

// TestConfined looks at a live worker from outside: after the job it runs
// as the given uid with no groups, no capabilities (not even in its bounding
// set), no_new_privs and a seccomp filter, under its own name; then it does
// its one job and exits.
func TestConfined(t *testing.T) {
	cred := newUID()
	w := startWorker(t, cred)
	w.hello()
	pw := w.sendJob(msg.StoreJob{Format: msg.FormatFlat, MaxBytes: 10}, w.stagingDir())
	defer pw.Close()
	pid := w.cmd.Process.Pid
	var rep confine.Report
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		must(t, err)
		rep, err = confine.ParseStatus(f)
		f.Close()
		must(t, err)
		if rep.Seccomp == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !rep.NoNewPrivs || rep.Seccomp != 2 || rep.SeccompFilters < 1 {
		t.Errorf("NoNewPrivs %v, Seccomp %d, %d filters; want true, 2, ≥1", rep.NoNewPrivs, rep.Seccomp, rep.SeccompFilters)
	}
	if rep.CapBnd != 0 || rep.CapEff != 0 || rep.CapPrm != 0 || rep.CapInh != 0 || rep.CapAmb != 0 {
		t.Errorf("capabilities: %+v", rep)
	}
	for i := range 4 {
		if rep.Uid[i] != int(cred.Uid) || rep.Gid[i] != int(cred.Gid) {
			t.Errorf("uids %v gids %v, want %d", rep.Uid, rep.Gid, cred.Uid)
		}
	}
	if len(rep.Groups) != 0 {
		t.Errorf("groups %v", rep.Groups)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	must(t, err)
	if string(comm) != "privnix-store\n" {
		t.Errorf("comm %q", comm)
	}
	// Its only sockets are the two channels.
	w.checkSockets(pid, 2)
	_, err = pw.Write([]byte("hello"))
	must(t, err)
	pw.Close()
	wantStaged(t, w.answer(), 5)
}

// checkSockets counts the sockets pid holds.
func (w *worker) checkSockets(pid, want int) {
	w.t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	must(w.t, err)
	n := 0
	for _, e := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	if n != want {
		w.t.Errorf("worker holds %d sockets, want %d", n, want)
	}
}

// TestPlantedSymlink: "out" already exists as a symlink to a directory
// outside. Nothing is followed: the job fails and the outside stays empty.
func TestPlantedSymlink(t *testing.T) {
	for _, job := range []msg.StoreJob{narJob(1 << 20), {Format: msg.FormatFlat, MaxBytes: 1 << 20}} {
		t.Run(fmt.Sprint(job.Format), func(t *testing.T) {
			w := startWorker(t, newUID())
			w.hello()
			dir := w.stagingDir()
			must(t, os.Symlink(w.outside, filepath.Join(w.dir, OutName)))
			must(t, os.Lchown(filepath.Join(w.dir, OutName), int(w.uid), int(w.uid)))
			pw := w.sendJob(job, dir)
			data := vector(t, "libutil-fuzz-nars/simple.nar")
			go func() { pw.Write(data); pw.Close() }()
			wantRefused(t, w.answer(), msg.ClassInternal, "the store worker failed")
			w.checkOutsideEmpty()
		})
	}
}

func TestRefusesRoot(t *testing.T) {
	w := startWorker(t, nil)
	w.wait(1)
	if !strings.Contains(w.stderr.String(), "refusing to run as root") {
		t.Errorf("stderr %q", w.stderr.String())
	}
	if m, _, err := w.mon.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("a worker started as root sent %v, %v", m, err)
	}
}

// TestBadJob: a job whose fds are not what the protocol says is refused
// before anything is read; the worker exits without an answer.
func TestBadJob(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(w *worker) error
	}{
		{"staging dir owned by root", func(w *worker) error {
			dir := w.stagingDir()
			must(w.t, os.Chown(w.dir, 0, 0))
			return w.mon.Send(&msg.StoreJob{Format: msg.FormatFlat}, dir, must1(w.t, func() (*os.File, error) { return os.Open("/dev/null") }))
		}},
		{"staging dir readable by others", func(w *worker) error {
			dir := w.stagingDir()
			must(w.t, os.Chmod(w.dir, 0o755))
			r, pw, err := os.Pipe()
			must(w.t, err)
			defer r.Close()
			defer pw.Close()
			return w.mon.Send(&msg.StoreJob{Format: msg.FormatFlat}, dir, r)
		}},
		{"data fd not a pipe", func(w *worker) error {
			dir := w.stagingDir()
			f, err := os.Open("/dev/null")
			must(w.t, err)
			defer f.Close()
			return w.mon.Send(&msg.StoreJob{Format: msg.FormatFlat}, dir, f)
		}},
		{"data fd a socket", func(w *worker) error {
			dir := w.stagingDir()
			a, b, err := ipc.Pair()
			must(w.t, err)
			defer a.Close()
			defer b.Close()
			return w.mon.Send(&msg.StoreJob{Format: msg.FormatFlat}, dir, a)
		}},
		{"wrong answer to Hello", func(w *worker) error {
			return w.mon.Send(&msg.OK{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWorker(t, newUID())
			w.hello()
			must(t, tc.send(w))
			w.wait(1)
			if m, _, err := w.mon.Recv(); !errors.Is(err, io.EOF) {
				t.Errorf("worker answered %v, %v", m, err)
			}
			t.Logf("stderr: %s", w.stderr.String())
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func must1[T any](t testing.TB, f func() (T, error)) T {
	t.Helper()
	v, err := f()
	must(t, err)
	return v
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// fileNAR streams the NAR of one regular file of size bytes from src; it
// returns the reader and the NAR's length (size must be a multiple of 8).
func fileNAR(t *testing.T, size uint64, src io.Reader) (io.Reader, uint64) {
	t.Helper()
	var empty bytes.Buffer
	nw := nar.NewWriter(&empty)
	must(t, nw.File(false, 0, strings.NewReader("")))
	must(t, nw.Close())
	pr, pw := io.Pipe()
	go func() {
		nw := nar.NewWriter(pw)
		err := nw.File(false, size, io.LimitReader(src, int64(size)))
		if err == nil {
			err = nw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, uint64(empty.Len()) + size
}

// TestBoundedMemory: the worker's peak RSS does not grow with the upload.
// It is read from /proc (VmHWM, reset at exec) while the worker waits for the
// last 16 bytes; the rusage of a child would include the forking parent's.
func TestBoundedMemory(t *testing.T) {
	const limit = 32 << 10 // KiB
	run := func(t *testing.T, job msg.StoreJob, r io.Reader, size uint64) {
		w := startWorker(t, newUID())
		w.hello()
		pw := w.sendJob(job, w.stagingDir())
		defer pw.Close()
		_, err := io.CopyN(pw, r, int64(size-16))
		must(t, err)
		var peak int
		deadline := time.Now().Add(10 * time.Second)
		for peak == 0 || w.readBytes() < size-16 {
			if time.Now().After(deadline) {
				t.Fatalf("the worker read %d bytes of %d", w.readBytes(), size-16)
			}
			peak = w.statusKiB("VmHWM")
			time.Sleep(5 * time.Millisecond)
		}
		_, err = io.Copy(pw, r)
		must(t, err)
		pw.Close()
		wantStaged(t, w.answer(), size)
		t.Logf("peak RSS %d KiB after %d bytes", peak, size-16)
		if peak > limit {
			t.Errorf("peak RSS %d KiB, more than %d", peak, limit)
		}
	}
	t.Run("nar of 256 MiB", func(t *testing.T) {
		r, size := fileNAR(t, 256<<20, zeros{})
		run(t, narJob(1<<30), r, size)
	})
	t.Run("flat of 64 MiB", func(t *testing.T) {
		run(t, msg.StoreJob{Format: msg.FormatFlat, MaxBytes: 1 << 30}, io.LimitReader(endless{}, 64<<20), 64<<20)
	})
}

// statusKiB reads a "<field>: <n> kB" line of the worker's /proc status.
func (w *worker) statusKiB(field string) int {
	w.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	must(w.t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			var n int
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &n); err != nil {
				w.t.Fatalf("%s: %q: %v", field, l, err)
			}
			return n
		}
	}
	w.t.Fatalf("no %s in the worker's status", field)
	return 0
}

// readBytes is how many bytes the worker has read (rchar of /proc/PID/io).
func (w *worker) readBytes() uint64 {
	w.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", w.cmd.Process.Pid))
	must(w.t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			var n uint64
			_, err := fmt.Sscanf(v, "%d", &n)
			must(w.t, err)
			return n
		}
	}
	w.t.Fatal("no rchar in the worker's io")
	return 0
}

// TestMoreJobs: a job with More is answered, then the worker waits for the
// next job (no second Hello) in a new staging directory beside the first; a
// job without More is its last. A directory anywhere else is beyond its
// confinement: that job fails and leaves the directory empty.
func TestMoreJobs(t *testing.T) {
	w := startWorker(t, newUID())
	w.hello()
	send := func(job msg.StoreJob, dir string, data string) msg.Message {
		t.Helper()
		f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		pw := w.sendJob(job, f)
		_, err = pw.Write([]byte(data))
		must(t, err)
		pw.Close()
		if !job.More {
			return w.answer()
		}
		m, fds, err := w.mon.Recv()
		must(t, err)
		if len(fds) != 0 {
			t.Fatalf("answer with %d fds", len(fds))
		}
		return m
	}
	newDir := func(parent string) string {
		t.Helper()
		d, err := os.MkdirTemp(parent, "job")
		must(t, err)
		must(t, os.Chmod(d, 0o700))
		must(t, os.Chown(d, int(w.uid), int(w.uid)))
		return d
	}
	readOut := func(dir string) string {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(dir, OutName))
		must(t, err)
		return string(got)
	}
	w.stagingDir().Close()
	first := w.dir
	wantStaged(t, send(msg.StoreJob{Format: msg.FormatFlat, MaxBytes: 5, More: true}, first, "first"), 5)
	if got := readOut(first); got != "first" {
		t.Errorf("first job wrote %q", got)
	}
	second := newDir(filepath.Dir(first))
	wantStaged(t, send(msg.StoreJob{Format: msg.FormatFlat, MaxBytes: 6, More: true}, second, "second"), 6)
	if got := readOut(second); got != "second" {
		t.Errorf("second job wrote %q", got)
	}
	elsewhere := newDir(t.TempDir())
	wantRefused(t, send(msg.StoreJob{Format: msg.FormatFlat, MaxBytes: 5}, elsewhere, "third"), msg.ClassInternal, "the store worker failed")
	if names, _ := os.ReadDir(elsewhere); len(names) != 0 {
		t.Errorf("a directory beyond the confinement holds %v", names)
	}
}

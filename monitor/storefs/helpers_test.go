package storefs

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Real unprivileged ids: the writer, and someone else.
const (
	writerUID = 1879113800
	otherUID  = 1879113801
)

// writerEnv carries a writer script to the re-executed test binary.
const writerEnv = "STOREFS_TEST_WRITER"

// TestMain runs the tests as root without CAP_DAC_OVERRIDE, as the systemd
// unit runs privnixd; re-executed with writerEnv set, it is the writer.
func TestMain(m *testing.M) {
	if script := os.Getenv(writerEnv); script != "" {
		if err := runWriterScript(script); err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "storefs tests must run as root: they seal trees written by real unprivileged uids")
		os.Exit(1)
	}
	if err := dropDACOverride(); err != nil {
		fmt.Fprintln(os.Stderr, "dropping CAP_DAC_OVERRIDE:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// dropDACOverride removes CAP_DAC_OVERRIDE from the effective set of every
// thread. Commands the tests exec as root get it back (execve as uid 0).
func dropDACOverride() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[0].Effective &^= 1 << unix.CAP_DAC_OVERRIDE
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return e
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(status), "\n") {
		var eff uint64
		if _, err := fmt.Sscanf(line, "CapEff:\t%x", &eff); err == nil && eff&(1<<unix.CAP_DAC_OVERRIDE) != 0 {
			return fmt.Errorf("still effective: %s", line)
		}
	}
	return nil
}

// op is one step of a writer script, run as writerUID in the staging directory.
type op struct {
	Op     string // mkdir file symlink link fifo socket deep many big xattr chmod
	Path   string
	Target string // symlink target; link: existing path
	Data   []byte // JSON carries it as base64: xattr values are binary
	Mode   uint32
	N      int
	Name   string // xattr name
}

func mkdir(path string, mode uint32) op { return op{Op: "mkdir", Path: path, Mode: mode} }
func file(path, data string, mode uint32) op {
	return op{Op: "file", Path: path, Data: []byte(data), Mode: mode}
}
func symlink(target, path string) op { return op{Op: "symlink", Path: path, Target: target} }
func hardlink(old, path string) op   { return op{Op: "link", Path: path, Target: old} }

// runWriterScript is the writer's side: it works beneath fd 3 (the staging
// directory it was handed) by path, as an unprivileged writer may.
func runWriterScript(script string) error {
	var ops []op
	if err := json.Unmarshal([]byte(script), &ops); err != nil {
		return err
	}
	if err := os.Chdir("/proc/self/fd/3"); err != nil {
		return err
	}
	for _, o := range ops {
		if err := o.run(); err != nil {
			return fmt.Errorf("%s %s: %w", o.Op, o.Path, err)
		}
	}
	return nil
}

func (o op) run() error {
	switch o.Op {
	case "mkdir":
		if err := os.Mkdir(o.Path, 0o700); err != nil {
			return err
		}
		return os.Chmod(o.Path, os.FileMode(o.Mode&0o777)|modeBits(o.Mode))
	case "file":
		if err := os.WriteFile(o.Path, o.Data, 0o600); err != nil {
			return err
		}
		return unix.Chmod(o.Path, o.Mode)
	case "chmod":
		return unix.Chmod(o.Path, o.Mode)
	case "symlink":
		return os.Symlink(o.Target, o.Path)
	case "link":
		return os.Link(o.Target, o.Path)
	case "fifo":
		return unix.Mkfifo(o.Path, 0o644)
	case "socket":
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Bind(fd, &unix.SockaddrUnix{Name: o.Path})
	case "xattr":
		return unix.Lsetxattr(o.Path, o.Name, o.Data, 0)
	case "deep": // o.N nested directories "d" below o.Path, a file at the bottom
		if err := os.Mkdir(o.Path, 0o755); err != nil {
			return err
		}
		if err := os.Chdir(o.Path); err != nil {
			return err
		}
		for i := 0; i < o.N; i++ {
			if err := os.Mkdir("d", 0o755); err != nil {
				return err
			}
			if err := os.Chdir("d"); err != nil {
				return err
			}
		}
		if err := os.WriteFile("f", []byte("bottom\n"), 0o644); err != nil {
			return err
		}
		return os.Chdir("/proc/self/fd/3")
	case "many": // o.N small files below o.Path, 1000 per directory
		for i := 0; i < o.N; i++ {
			dir := filepath.Join(o.Path, fmt.Sprintf("d%03d", i/1000))
			if i%1000 == 0 {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
			}
			data := fmt.Sprintf("file %d\n%s", i, strings.Repeat("x", i%300))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), []byte(data), 0o644); err != nil {
				return err
			}
		}
		return nil
	case "sparse": // o.N bytes, "head" at the start and "tail" at the end, a hole between
		f, err := os.OpenFile(o.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, err1 := f.WriteAt([]byte("head"), 0)
		_, err2 := f.WriteAt([]byte("tail"), int64(o.N)-4)
		return errors.Join(err1, err2, f.Close())
	case "churn": // swap out/sub (a directory) and out/f (a file) with symlinks to o.Target, forever
		if err := os.Mkdir("out", 0o755); err != nil {
			return err
		}
		for _, p := range []string{"out/sub", "out/sub/deeper"} {
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
		}
		for _, p := range []string{"out/f", "out/sub/x", "out/sub/deeper/y"} {
			if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
				return err
			}
		}
		for i := 0; i < 300; i++ { // enough for the walk to take a while
			if err := os.WriteFile(fmt.Sprintf("out/sub/deeper/%d", i), []byte("z"), 0o644); err != nil {
				return err
			}
		}
		if err := errors.Join(os.Symlink(o.Target, "out/sublink"), os.Symlink(o.Target+"/file", "out/flink")); err != nil {
			return err
		}
		// Through an fd on out: it keeps working after the staging directory is taken back.
		out, err := unix.Open("out", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		os.Stdout.WriteString("ready\n")
		for {
			unix.Renameat2(out, "sub", out, "sublink", unix.RENAME_EXCHANGE)
			unix.Renameat2(out, "f", out, "flink", unix.RENAME_EXCHANGE)
			unix.Renameat2(out, "sub/deeper", out, "sublink", unix.RENAME_EXCHANGE)
		}
	case "big": // o.N bytes of pseudo-random data
		f, err := os.OpenFile(o.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		r := rand.NewChaCha8([32]byte{1})
		buf := make([]byte, 1<<20)
		for left := o.N; left > 0; left -= len(buf) {
			r.Read(buf)
			if _, err := f.Write(buf[:min(left, len(buf))]); err != nil {
				f.Close()
				return err
			}
		}
		return f.Close()
	}
	return fmt.Errorf("unknown op")
}

func modeBits(m uint32) os.FileMode {
	var fm os.FileMode
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// write runs ops as writerUID (a real process with that uid) in st's directory.
func write(t testing.TB, st *Staging, ops ...op) {
	t.Helper()
	script, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), writerEnv+"="+string(script))
	cmd.ExtraFiles = []*os.File{st.Dir()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: writerUID, Gid: writerUID, Groups: []uint32{}}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("writer: %v\n%s", err, out)
	}
}

// startWriter runs ops like write, but returns once the writer prints
// "ready", leaving it running; stop it with the returned function.
func startWriter(t testing.TB, st *Staging, ops ...op) (stop func()) {
	t.Helper()
	script, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), writerEnv+"="+string(script))
	cmd.ExtraFiles = []*os.File{st.Dir()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: writerUID, Gid: writerUID, Groups: []uint32{}}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		stop()
		t.Fatalf("writer did not start: %q %v", line, err)
	}
	return stop
}

// tmpDir is a fresh 0755 directory removed with rm -rf (exec'd as root with
// every capability: the test process has no CAP_DAC_OVERRIDE).
func tmpDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "storefs-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("rm", "-rf", d).CombinedOutput(); err != nil {
			t.Errorf("rm -rf %s: %v %s", d, err, out)
		}
	})
	return d
}

type env struct {
	base, store, staging string
	s                    *Store
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{base: tmpDir(t)}
	e.store = filepath.Join(e.base, "store")
	e.staging = filepath.Join(e.base, "staging")
	if err := os.Mkdir(e.store, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(e.store, e.staging)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e.s = s
	return e
}

func (e *env) newStaging(t testing.TB) *Staging {
	t.Helper()
	st, err := e.s.NewStaging(writerUID, writerUID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Discard() })
	return st
}

// path is the staging directory's path, for checks made from outside.
func (e *env) path(st *Staging) string { return filepath.Join(e.staging, st.ID()) }

// run runs a command (exec'd as root with all capabilities) and returns stdout.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v %s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// nixHash is Nix's own NAR hash of path: nix-hash --type sha256 --base32, and
// the same from nix-store --dump | sha256sum (checked to agree), as nix32.
func nixHash(t testing.TB, path string) string {
	t.Helper()
	h := strings.TrimSpace(run(t, "nix-hash", "--type", "sha256", "--base32", path))
	dump := run(t, "sh", "-c", `nix-store --dump "$1" | sha256sum`, "sh", path)
	b16 := strings.TrimSpace(run(t, "nix-hash", "--type", "sha256", "--to-base16", h))
	if !strings.HasPrefix(dump, b16+" ") {
		t.Fatalf("nix-store --dump | sha256sum = %q, nix-hash = %s (%s)", dump, h, b16)
	}
	return h
}

// inode is what the tests compare of a file system object (never followed).
type inode struct {
	Ino, Nlink     uint64
	Uid, Gid, Mode uint32
	Mtime          int64
	Size           int64
	Xattrs         string
}

func lstat(t testing.TB, path string) inode {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if err != nil && err != unix.EOPNOTSUPP {
		t.Fatalf("llistxattr %s: %v", path, err)
	}
	x := string(bytes.ReplaceAll(buf[:n], []byte{0}, []byte{' '}))
	return inode{Ino: st.Ino, Nlink: st.Nlink, Uid: st.Uid, Gid: st.Gid, Mode: st.Mode, Mtime: st.Mtim.Sec, Size: st.Size, Xattrs: x}
}

// walk lstats root and everything beneath it, by path relative to root.
func walk(t testing.TB, root string) map[string]inode {
	t.Helper()
	m := map[string]inode{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = lstat(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// posixACL is a POSIX ACL xattr value (system.posix_acl_access or _default)
// granting uid read access.
func posixACL(uid uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2) // POSIX_ACL_XATTR_VERSION
	for _, e := range [][3]uint32{{1, 6, ^uint32(0)}, {2, 4, uid}, {4, 4, ^uint32(0)}, {0x10, 4, ^uint32(0)}, {0x20, 4, ^uint32(0)}} {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0])) // tag: USER_OBJ, USER, GROUP_OBJ, MASK, OTHER
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

// Command builder is the test builder of package buildproc: a static Go
// program (no shell exists in the sandbox) that reports what it is and what
// it may do, as JSON in $out/report.json, or misbehaves on request.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Report is what the "report" mode writes.
type Report struct {
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
	Fds                  []string // open fds, except the one listing them
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: builder report|true|fail|background|sleep")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "true":
		if err := os.WriteFile(os.Getenv("out"), []byte("done\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "fail":
		fmt.Println("building...")
		fmt.Fprintln(os.Stderr, "error: the frobnicator is broken")
		os.Exit(3)
	case "sleep":
		time.Sleep(time.Hour)
	case "background":
		background()
	case "hang":
		// leaves a process behind and never exits: the monitor's timeout
		background()
		time.Sleep(time.Hour)
	case "report":
		report()
	default:
		os.Exit(2)
	}
}

// background leaves a process behind, in a session of its own, and exits.
func background() {
	cmd := exec.Command("/proc/self/exe", "sleep")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Getenv("out"), fmt.Appendf(nil, "%d\n", cmd.Process.Pid), 0o644); err != nil {
		os.Exit(1)
	}
	time.Sleep(100 * time.Millisecond) // it is running
	fmt.Println("left", cmd.Process.Pid, "behind")
}

func report() {
	// First, before this program opens anything of its own: what it
	// inherited.
	// Raw calls: os.Open would start the runtime's poller (an epoll fd and
	// an eventfd of our own).
	var fds []string
	if d, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		buf := make([]byte, 4096)
		n, _ := unix.ReadDirent(d, buf)
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			if name != fmt.Sprint(d) {
				fds = append(fds, name)
			}
		}
		unix.Close(d)
	}
	out := os.Getenv("out")
	r := Report{
		Fds: fds,
		Uid: os.Getuid(), Gid: os.Getgid(), Euid: os.Geteuid(), Egid: os.Getegid(), Pid: os.Getpid(),
		Env: os.Environ(), Status: map[string]string{}, Files: map[string]string{}, Probes: map[string]string{},
	}
	r.Groups, _ = os.Getgroups()
	if b, err := os.ReadFile("/proc/self/personality"); err == nil {
		r.Status["personality"] = strings.TrimSpace(string(b))
	}
	r.Hostname, _ = os.Hostname()
	r.Cwd, _ = os.Getwd()
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			switch k {
			case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Groups":
				r.Status[k] = strings.TrimSpace(v)
			}
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			r.Interfaces = append(r.Interfaces, i.Name+":"+i.Flags.String())
		}
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	r.Passwd, r.Group, r.Hosts = read("/etc/passwd"), read("/etc/group"), read("/etc/hosts")
	if ents, err := os.ReadDir("."); err == nil {
		for _, e := range ents {
			r.Files[e.Name()] = read(e.Name())
		}
	}
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			if c := e.Name()[0]; c >= '0' && c <= '9' {
				r.Procs = append(r.Procs, e.Name())
			}
		}
	}

	p := r.Probes
	create := func(path string) error {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
		}
		return err
	}
	// $out does not exist yet; it is a directory we make.
	_, err := os.Lstat(out)
	p["out exists before"] = errName(err)
	p["mkdir out"] = errName(os.Mkdir(out, 0o755))
	p["write out"] = errName(os.WriteFile(out+"/file", []byte("hello\n"), 0o644))
	p["write build"] = errName(create(r.Cwd + "/scratch"))
	p["write tmp"] = errName(create("/tmp/scratch"))
	p["write /"] = errName(create("/pwned"))
	p["write /etc"] = errName(create("/etc/pwned"))
	p["write /etc/passwd"] = errName(func() error {
		f, err := os.OpenFile("/etc/passwd", os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			f.Close()
		}
		return err
	}())
	p["write /var/tmp"] = errName(create("/var/tmp/pwned"))
	p["write /dev"] = errName(create("/dev/pwned"))
	p["write /dev/null"] = errName(os.WriteFile("/dev/null", []byte("x"), 0))
	p["write /dev/shm"] = errName(create("/dev/shm/scratch"))
	p["write input dir"] = errName(create(os.Getenv("INPUT_DIR") + "/pwned"))
	p["write input file"] = errName(os.WriteFile(os.Getenv("INPUT_FILE"), []byte("pwned"), 0))
	p["chmod input"] = errName(os.Chmod(os.Getenv("INPUT_FILE"), 0o777))
	p["squat store name"] = errName(create(os.Getenv("NIX_STORE") + "/" + os.Getenv("SQUAT")))
	p["unlink input mount point"] = errName(os.Remove(os.Getenv("INPUT_DIR")))
	p["rename input mount point"] = errName(os.Rename(os.Getenv("INPUT_DIR"), os.Getenv("NIX_STORE")+"/moved"))
	p["read input"] = errName(func() error { _, err := os.ReadFile(os.Getenv("INPUT_DIR") + "/data"); return err }())

	// setuid and setgid bits, every way
	f := out + "/file"
	p["chmod 4755"] = errName(os.Chmod(f, os.ModeSetuid|0o755))
	p["chmod 2755"] = errName(unix.Chmod(f, 0o2755))
	p["fchmodat 4755"] = errName(unix.Fchmodat(unix.AT_FDCWD, f, 0o4755, 0))
	p["fchmodat2 6755"] = errName(func() error {
		pp, _ := unix.BytePtrFromString(f)
		cwd := unix.AT_FDCWD
		_, _, e := unix.Syscall6(unix.SYS_FCHMODAT2, uintptr(cwd), uintptr(unsafe.Pointer(pp)), 0o6755, 0, 0, 0)
		if e != 0 {
			return e
		}
		return nil
	}())
	p["fchmod 4755"] = errName(func() error {
		fd, err := unix.Open(f, unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Fchmod(fd, 0o4755)
	}())
	p["chmod 0755"] = errName(os.Chmod(f, 0o755))
	p["create 4755"] = errName(func() error {
		fd, err := unix.Open(out+"/suid", unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o4755)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}())
	p["mknod 2755"] = errName(unix.Mknod(out+"/sgid", unix.S_IFREG|0o2755, 0))
	p["setxattr"] = errName(unix.Setxattr(f, "user.x", []byte("y"), 0))
	p["setxattr acl"] = errName(unix.Setxattr(f, "system.posix_acl_access", []byte{2, 0, 0, 0}, 0))
	p["io_uring_setup"] = errName(func() error {
		var params [120]byte
		_, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		if e != 0 {
			return e
		}
		return nil
	}())
	p["setuid 0"] = errName(unix.Setresuid(0, 0, 0))
	p["mount"] = errName(unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))

	// links planted in the output and the build directory
	p["hardlink input"] = errName(os.Link(os.Getenv("INPUT_DIR")+"/data", out+"/hardlink"))
	p["hardlink input file"] = errName(os.Link(os.Getenv("INPUT_FILE"), r.Cwd+"/hardlink"))
	p["symlink shadow"] = errName(os.Symlink("/etc/shadow", out+"/shadow"))
	p["symlink sentinel"] = errName(os.Symlink(os.Getenv("HOST_SENTINEL"), r.Cwd+"/sentinel"))
	p["hardlink sentinel"] = errName(os.Link(os.Getenv("HOST_SENTINEL"), out+"/sentinel"))
	p["chmod build dir 0777"] = errName(os.Chmod(r.Cwd, 0o777))

	// sandbox-paths and the host's /tmp
	_, err = os.ReadFile(os.Getenv("SANDBOX_FILE"))
	p["read sandbox path"] = errName(err)
	p["write sandbox path"] = errName(os.WriteFile(os.Getenv("SANDBOX_FILE"), []byte("pwned"), 0))
	_, err = os.Stat(os.Getenv("SANDBOX_OPTIONAL"))
	p["stat optional sandbox path"] = errName(err)
	_, err = os.Stat(os.Getenv("HOST_TMP"))
	p["stat host tmp"] = errName(err)

	// host files
	_, err = os.Stat("/etc/shadow")
	p["stat /etc/shadow"] = errName(err)
	_, err = os.ReadFile(os.Getenv("HOST_SENTINEL"))
	p["read host sentinel"] = errName(err)
	p["write host sentinel"] = errName(os.WriteFile(os.Getenv("HOST_SENTINEL"), []byte("pwned"), 0))

	// abstract sockets
	p["connect abstract"] = errName(func() error {
		s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		return unix.Connect(s, &unix.SockaddrUnix{Name: "@" + os.Getenv("ABSTRACT")})
	}())
	// No socket() needed: a socketpair end can send a datagram (with
	// SCM_RIGHTS) to any abstract datagram socket by address.
	p["sendto abstract dgram"] = errName(func() error {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
		out, err := unix.Open(os.Getenv("out")+"/file", unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(out)
		return unix.Sendmsg(fds[0], []byte("fd"), unix.UnixRights(out), &unix.SockaddrUnix{Name: "@" + os.Getenv("ABSTRACT") + "-dgram"}, 0)
	}())
	p["socketpair"] = errName(func() error {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
		return err
	}())

	b, _ := json.MarshalIndent(r, "", " ")
	if err := os.WriteFile(out+"/report.json", b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("report written")
}

package confine

import (
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// A classic-BPF interpreter for exactly the instructions bpf.go emits, so the
// compiled tables can be checked row by row without a kernel. The kernel's
// own verdicts are checked by the process tests in confine_test.go.

type seccompData struct {
	nr   uint32
	arch uint32
	args [6]uint64
}

func (d seccompData) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], d.nr)
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

func runBPF(t *testing.T, prog []unix.SockFilter, d seccompData) uint32 {
	t.Helper()
	data := d.bytes()
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K%4 != 0 || int(in.K)+4 > len(data) {
				t.Fatalf("pc %d: load at %d", pc, in.K)
			}
			a = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			a &= in.K
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if a == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			if a&in.K != 0 {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("pc %d: unexpected opcode %#x", pc, in.Code)
		}
	}
	t.Fatalf("program fell off its end")
	return 0
}

const (
	allow = unix.SECCOMP_RET_ALLOW
	kill  = unix.SECCOMP_RET_KILL_PROCESS
	eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
)

func verdict(v uint32) string {
	switch {
	case v == allow:
		return "allow"
	case v == kill:
		return "kill"
	case v&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_ERRNO:
		return unix.ErrnoName(unix.Errno(v & unix.SECCOMP_RET_DATA))
	}
	return fmt.Sprintf("%#x", v)
}

func compile(t *testing.T, table func(ruleEnv) []rule, env ruleEnv) []unix.SockFilter {
	t.Helper()
	prog, err := assemble(table(env), unix.EPERM)
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

// Never allowed, whatever the arguments, in any profile.
var neverAllowed = map[string]uintptr{
	"socket": unix.SYS_SOCKET, "socketpair": unix.SYS_SOCKETPAIR, "connect": unix.SYS_CONNECT,
	"bind": unix.SYS_BIND, "listen": unix.SYS_LISTEN, "accept4": unix.SYS_ACCEPT4, "sendmmsg": unix.SYS_SENDMMSG,
	"io_uring_setup": unix.SYS_IO_URING_SETUP, "io_uring_enter": unix.SYS_IO_URING_ENTER, "io_uring_register": unix.SYS_IO_URING_REGISTER,
	"ptrace": unix.SYS_PTRACE, "process_vm_readv": unix.SYS_PROCESS_VM_READV, "process_vm_writev": unix.SYS_PROCESS_VM_WRITEV,
	"mount": unix.SYS_MOUNT, "umount2": unix.SYS_UMOUNT2, "pivot_root": unix.SYS_PIVOT_ROOT, "chroot": unix.SYS_CHROOT,
	"unshare": unix.SYS_UNSHARE, "setns": unix.SYS_SETNS, "open_tree": unix.SYS_OPEN_TREE, "fsopen": unix.SYS_FSOPEN,
	"setuid": unix.SYS_SETUID, "setgid": unix.SYS_SETGID, "setreuid": unix.SYS_SETREUID, "setresuid": unix.SYS_SETRESUID,
	"setresgid": unix.SYS_SETRESGID, "setgroups": unix.SYS_SETGROUPS, "setfsuid": unix.SYS_SETFSUID, "capset": unix.SYS_CAPSET,
	"execve": unix.SYS_EXECVE, "execveat": unix.SYS_EXECVEAT,
	"fchmodat": unix.SYS_FCHMODAT, "fchmodat2": unix.SYS_FCHMODAT2, "fchownat": unix.SYS_FCHOWNAT, "fchown": unix.SYS_FCHOWN,
	"setxattr": unix.SYS_SETXATTR, "fsetxattr": unix.SYS_FSETXATTR, "lsetxattr": unix.SYS_LSETXATTR,
	"linkat": unix.SYS_LINKAT, "renameat2": unix.SYS_RENAMEAT2, "unlinkat": unix.SYS_UNLINKAT, "mknodat": unix.SYS_MKNODAT,
	"bpf": unix.SYS_BPF, "perf_event_open": unix.SYS_PERF_EVENT_OPEN, "userfaultfd": unix.SYS_USERFAULTFD,
	"keyctl": unix.SYS_KEYCTL, "add_key": unix.SYS_ADD_KEY, "init_module": unix.SYS_INIT_MODULE, "kexec_load": unix.SYS_KEXEC_LOAD,
	"personality": unix.SYS_PERSONALITY, "seccomp": unix.SYS_SECCOMP, "ioctl": unix.SYS_IOCTL,
	"landlock_create_ruleset": unix.SYS_LANDLOCK_CREATE_RULESET, "landlock_restrict_self": unix.SYS_LANDLOCK_RESTRICT_SELF,
	"pidfd_open": unix.SYS_PIDFD_OPEN, "pidfd_getfd": unix.SYS_PIDFD_GETFD, "pidfd_send_signal": unix.SYS_PIDFD_SEND_SIGNAL,
	"memfd_create": unix.SYS_MEMFD_CREATE, "name_to_handle_at": unix.SYS_NAME_TO_HANDLE_AT, "open_by_handle_at": unix.SYS_OPEN_BY_HANDLE_AT,
	"clone3": unix.SYS_CLONE3, "vmsplice": unix.SYS_VMSPLICE, "setrlimit": unix.SYS_SETRLIMIT, "prlimit64": unix.SYS_PRLIMIT64,
}

// argument patterns that together cover every bit of the checked words
var argPatterns = []uint64{0, 1, 0xffffffff, 0xffffffffffffffff, 0x41, 0x242, 0x7ff, 1 << 32}

func TestTablesNeverAllow(t *testing.T) {
	env := ruleEnv{pid: 1, sendFDs: []uint32{3}}
	for _, p := range []struct {
		name  string
		table func(ruleEnv) []rule
	}{{"frontend", frontendRules}, {"storeproc", storeProcRules}} {
		prog := compile(t, p.table, env)
		for name, nr := range neverAllowed {
			for _, a := range argPatterns {
				d := seccompData{nr: uint32(nr), arch: nativeAuditArch, args: [6]uint64{a, a, a, a, a, a}}
				if v := runBPF(t, prog, d); v == allow {
					t.Errorf("%s: %s(%#x…) allowed", p.name, name, a)
				}
			}
		}
		for name, nr := range map[string]uintptr{"fchmod": unix.SYS_FCHMOD, "mkdirat": unix.SYS_MKDIRAT, "symlinkat": unix.SYS_SYMLINKAT, "ftruncate": unix.SYS_FTRUNCATE} {
			v := runBPF(t, prog, seccompData{nr: uint32(nr), arch: nativeAuditArch})
			if want := map[string]uint32{"frontend": eperm, "storeproc": allow}[p.name]; v != want {
				t.Errorf("%s: %s → %s, want %s", p.name, name, verdict(v), verdict(want))
			}
		}
	}
}

func TestTableArguments(t *testing.T) {
	env := ruleEnv{pid: 7, sendFDs: []uint32{3, 5}}
	front := compile(t, frontendRules, env)
	store := compile(t, storeProcRules, env)
	call := func(nr uintptr, args ...uint64) seccompData {
		d := seccompData{nr: uint32(nr), arch: nativeAuditArch}
		copy(d.args[:], args)
		return d
	}
	hi := uint64(0xdead) << 32 // garbage in the high word: the kernel ignores it for these 32-bit args, and so do we
	for _, tc := range []struct {
		what  string
		prog  []unix.SockFilter
		d     seccompData
		wantV uint32
	}{
		{"front openat O_RDONLY|O_DIRECTORY", front, call(unix.SYS_OPENAT, 0, 0, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC), allow},
		{"front openat O_PATH", front, call(unix.SYS_OPENAT, 0, 0, unix.O_PATH|hi), allow},
		{"front openat O_WRONLY", front, call(unix.SYS_OPENAT, 0, 0, unix.O_WRONLY), eperm},
		{"front openat O_RDWR", front, call(unix.SYS_OPENAT, 0, 0, unix.O_RDWR), eperm},
		{"front openat O_CREAT", front, call(unix.SYS_OPENAT, 0, 0, unix.O_CREAT), eperm},
		{"front openat O_TRUNC", front, call(unix.SYS_OPENAT, 0, 0, unix.O_TRUNC), eperm},
		{"front openat O_TMPFILE|O_WRONLY", front, call(unix.SYS_OPENAT, 0, 0, unix.O_TMPFILE|unix.O_WRONLY), eperm},
		{"front openat O_CREAT|O_EXCL|O_WRONLY", front, call(unix.SYS_OPENAT, 0, 0, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY), eperm},
		{"store openat O_CREAT|O_EXCL|O_WRONLY", store, call(unix.SYS_OPENAT, 0, 0, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC), allow},
		{"store openat O_CREAT|O_WRONLY", store, call(unix.SYS_OPENAT, 0, 0, unix.O_CREAT|unix.O_WRONLY), eperm},
		{"store openat O_CREAT|O_EXCL|O_RDWR", store, call(unix.SYS_OPENAT, 0, 0, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR), eperm},
		{"store openat O_CREAT|O_EXCL|O_WRONLY|O_TRUNC", store, call(unix.SYS_OPENAT, 0, 0, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_TRUNC), eperm},
		{"store openat O_WRONLY", store, call(unix.SYS_OPENAT, 0, 0, unix.O_WRONLY), eperm},
		{"store openat O_RDONLY", store, call(unix.SYS_OPENAT, 0, 0, unix.O_RDONLY), allow},
		{"store fchmod 0755", store, call(unix.SYS_FCHMOD, 3, 0o755), allow},
		{"store fchmod 04755", store, call(unix.SYS_FCHMOD, 3, 0o4755), eperm},
		{"store fchmod 02755", store, call(unix.SYS_FCHMOD, 3, 0o2755), eperm},
		{"store fchmod 01755", store, call(unix.SYS_FCHMOD, 3, 0o1755), eperm},
		{"clone thread", front, call(unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_FS|unix.CLONE_FILES|unix.CLONE_SIGHAND|unix.CLONE_SYSVSEM|unix.CLONE_THREAD|unix.CLONE_SETTLS), allow},
		{"clone fork", front, call(unix.SYS_CLONE, uint64(unix.SIGCHLD)), eperm},
		{"clone vfork", front, call(unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_VFORK|uint64(unix.SIGCHLD)), eperm},
		{"clone3", front, call(unix.SYS_CLONE3), unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{"mmap rw", front, call(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE), allow},
		{"mmap rx", front, call(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_EXEC), eperm},
		{"mprotect x", front, call(unix.SYS_MPROTECT, 0, 4096, unix.PROT_EXEC), eperm},
		{"mprotect none", front, call(unix.SYS_MPROTECT, 0, 4096, unix.PROT_NONE), allow},
		{"prctl set_vma", front, call(unix.SYS_PRCTL, unix.PR_SET_VMA), allow},
		{"prctl set_dumpable", front, call(unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, 1), eperm},
		{"prctl no_new_privs", front, call(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1), eperm},
		{"kill self", front, call(unix.SYS_KILL, 7, uint64(unix.SIGUSR1)), allow},
		{"kill other", front, call(unix.SYS_KILL, 8, uint64(unix.SIGKILL)), eperm},
		{"kill all", front, call(unix.SYS_KILL, 0xffffffff, uint64(unix.SIGKILL)), eperm},
		{"kill group", front, call(unix.SYS_KILL, 0, uint64(unix.SIGKILL)), eperm},
		{"tgkill own thread", front, call(unix.SYS_TGKILL, 7, 9, uint64(unix.SIGURG)), allow},
		{"tgkill other process", front, call(unix.SYS_TGKILL, 8, 8, uint64(unix.SIGKILL)), eperm},
		{"fcntl getfl", front, call(unix.SYS_FCNTL, 3, unix.F_GETFL), allow},
		{"fcntl dupfd_cloexec", front, call(unix.SYS_FCNTL, 3, unix.F_DUPFD_CLOEXEC), allow},
		{"fcntl setown", front, call(unix.SYS_FCNTL, 3, unix.F_SETOWN), eperm},
		{"fcntl setlk", front, call(unix.SYS_FCNTL, 3, unix.F_SETLK), eperm},
		{"sendmsg channel", front, call(unix.SYS_SENDMSG, 3), allow},
		{"sendmsg second channel", front, call(unix.SYS_SENDMSG, 5), allow},
		{"sendmsg other fd", front, call(unix.SYS_SENDMSG, 4), eperm},
		{"sendto other fd", front, call(unix.SYS_SENDTO, 4), eperm},
		{"read", front, call(unix.SYS_READ, 4), allow},
		{"unknown syscall", front, call(1000), eperm},
		{"foreign arch", front, seccompData{nr: unix.SYS_READ, arch: unix.AUDIT_ARCH_I386}, kill},
		{"foreign arch arm", front, seccompData{nr: unix.SYS_READ, arch: unix.AUDIT_ARCH_ARM}, kill},
	} {
		if v := runBPF(t, tc.prog, tc.d); v != tc.wantV {
			t.Errorf("%s: %s, want %s", tc.what, verdict(v), verdict(tc.wantV))
		}
	}
	if nativeAuditArch == unix.AUDIT_ARCH_X86_64 {
		if v := runBPF(t, front, call(unix.SYS_READ|x32SyscallBitForTest)); v != kill {
			t.Errorf("x32 read: %s, want kill", verdict(v))
		}
	}
	// Without SendFDs, sendmsg is allowed on any fd.
	open := compile(t, frontendRules, ruleEnv{pid: 7})
	if v := runBPF(t, open, call(unix.SYS_SENDMSG, 4)); v != allow {
		t.Errorf("sendmsg without SendFDs: %s", verdict(v))
	}
}

func TestAssembleRejectsDuplicates(t *testing.T) {
	_, err := assemble([]rule{{name: "a", nr: unix.SYS_READ}, {name: "b", nr: unix.SYS_READ}}, unix.EPERM)
	if err == nil {
		t.Fatal("duplicate rows accepted")
	}
}

// The fetcher may open IPv4 and IPv6 sockets and connect them, nothing else:
// no AF_UNIX or netlink socket, no listening, no writes by path.
func TestFetcherTable(t *testing.T) {
	prog := compile(t, fetcherRules, ruleEnv{pid: 1, sendFDs: []uint32{3}})
	for _, c := range []struct {
		what string
		nr   uintptr
		arg0 uint64
		want uint32
	}{
		{"socket(AF_INET)", unix.SYS_SOCKET, unix.AF_INET, allow},
		{"socket(AF_INET6)", unix.SYS_SOCKET, unix.AF_INET6, allow},
		{"socket(AF_UNIX)", unix.SYS_SOCKET, unix.AF_UNIX, eperm},
		{"socket(AF_NETLINK)", unix.SYS_SOCKET, unix.AF_NETLINK, eperm},
		{"connect", unix.SYS_CONNECT, 5, allow},
		{"bind", unix.SYS_BIND, 5, eperm},
		{"listen", unix.SYS_LISTEN, 5, eperm},
		{"mkdirat", unix.SYS_MKDIRAT, 5, eperm},
		{"sendmsg on another fd", unix.SYS_SENDMSG, 5, eperm},
		{"sendmsg on the monitor channel", unix.SYS_SENDMSG, 3, allow},
	} {
		d := seccompData{nr: uint32(c.nr), arch: nativeAuditArch, args: [6]uint64{c.arg0}}
		if v := runBPF(t, prog, d); v != c.want {
			t.Errorf("%s → %s, want %s", c.what, verdict(v), verdict(c.want))
		}
	}
	for name, nr := range neverAllowed {
		if nr == unix.SYS_SOCKET || nr == unix.SYS_CONNECT { // its job, checked above
			continue
		}
		for _, a := range argPatterns {
			d := seccompData{nr: uint32(nr), arch: nativeAuditArch, args: [6]uint64{a, a, a, a, a, a}}
			if v := runBPF(t, prog, d); v == allow {
				t.Errorf("%s(%#x…) allowed", name, a)
			}
		}
	}
}

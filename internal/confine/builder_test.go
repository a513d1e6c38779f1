package confine

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The Builder table, row by row, through the BPF interpreter of bpf_test.go.
// The kernel's verdicts on a real builder are checked by buildproc's tests,
// which run builders under ApplyBuilder.
func TestBuilderFilter(t *testing.T) {
	local, err := BuilderFilter(false, true)
	if err != nil {
		t.Fatal(err)
	}
	fod, err := BuilderFilter(true, true)
	if err != nil {
		t.Fatal(err)
	}
	fodUnscoped, err := BuilderFilter(true, false)
	if err != nil {
		t.Fatal(err)
	}
	call := func(nr uintptr, args ...uint64) seccompData {
		d := seccompData{nr: uint32(nr), arch: nativeAuditArch}
		copy(d.args[:], args)
		return d
	}
	hi := uint64(0xdead) << 32
	enotsup := unix.SECCOMP_RET_ERRNO | uint32(unix.ENOTSUP)
	enosys := unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	for _, tc := range []struct {
		what string
		prog []unix.SockFilter
		d    seccompData
		want uint32
	}{
		// allowed by default: what builds do all day
		{"read", local, call(unix.SYS_READ, 0), allow},
		{"execve", local, call(unix.SYS_EXECVE), allow},
		{"clone", local, call(unix.SYS_CLONE), allow},
		{"ptrace (same uid, own PID namespace)", local, call(unix.SYS_PTRACE), allow},
		{"chmod 0755", local, call(unix.SYS_CHMOD, 0, 0o755), allow},
		{"chmod sticky", local, call(unix.SYS_CHMOD, 0, 0o1777), allow},
		{"fchmod 0644", local, call(unix.SYS_FCHMOD, 3, 0o644), allow},
		{"fchmodat 0700", local, call(unix.SYS_FCHMODAT, 3, 0, 0o700), allow},
		{"fchmodat2 0700", local, call(unix.SYS_FCHMODAT2, 3, 0, 0o700, 0), allow},
		{"openat O_CREAT 0644", local, call(unix.SYS_OPENAT, 3, 0, unix.O_CREAT|unix.O_WRONLY, 0o644), allow},
		{"open O_CREAT 0755", local, call(unix.SYS_OPEN, 0, unix.O_CREAT, 0o755), allow},
		{"mknodat fifo", local, call(unix.SYS_MKNODAT, 3, 0, unix.S_IFIFO|0o600, 0), allow},
		{"socket AF_UNIX sandboxed", local, call(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM), allow},
		{"socketpair (fixed-output)", fod, call(unix.SYS_SOCKETPAIR, unix.AF_UNIX), allow},
		{"socket AF_INET (fixed-output)", fod, call(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM), allow},
		{"socket AF_INET6 (fixed-output)", fod, call(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_DGRAM), allow},
		{"socket AF_NETLINK (fixed-output)", fod, call(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW), allow},

		// setuid and setgid bits, however they are asked for
		{"chmod 4755", local, call(unix.SYS_CHMOD, 0, 0o4755), eperm},
		{"chmod 2755", local, call(unix.SYS_CHMOD, 0, 0o2755), eperm},
		{"chmod 4755 high garbage", local, call(unix.SYS_CHMOD, 0, hi|0o4755), eperm},
		{"fchmod 6755", local, call(unix.SYS_FCHMOD, 3, 0o6755), eperm},
		{"fchmodat 4755", local, call(unix.SYS_FCHMODAT, 3, 0, 0o4755), eperm},
		{"fchmodat2 2755", local, call(unix.SYS_FCHMODAT2, 3, 0, 0o2755, 0), eperm},
		{"open O_CREAT 4755", local, call(unix.SYS_OPEN, 0, unix.O_CREAT, 0o4755), eperm},
		{"creat 2755", local, call(unix.SYS_CREAT, 0, 0o2755), eperm},
		{"openat O_CREAT 4755", local, call(unix.SYS_OPENAT, 3, 0, unix.O_CREAT|unix.O_WRONLY, 0o4755), eperm},
		{"mknod 4755", local, call(unix.SYS_MKNOD, 0, unix.S_IFREG|0o4755), eperm},
		{"mknodat 2755", local, call(unix.SYS_MKNODAT, 3, 0, unix.S_IFREG|0o2755), eperm},
		{"openat2", local, call(unix.SYS_OPENAT2), enosys},

		// xattrs, io_uring, privileged calls
		{"setxattr", local, call(unix.SYS_SETXATTR), enotsup},
		{"lsetxattr", local, call(unix.SYS_LSETXATTR), enotsup},
		{"fsetxattr", local, call(unix.SYS_FSETXATTR), enotsup},
		{"setxattrat", local, call(unix.SYS_SETXATTRAT), enotsup},
		{"io_uring_setup", local, call(unix.SYS_IO_URING_SETUP), eperm},
		{"io_uring_enter", fod, call(unix.SYS_IO_URING_ENTER), eperm},
		{"mount", local, call(unix.SYS_MOUNT), eperm},
		{"open_tree", local, call(unix.SYS_OPEN_TREE), eperm},
		{"bpf", local, call(unix.SYS_BPF), eperm},
		{"keyctl", local, call(unix.SYS_KEYCTL), eperm},
		{"userfaultfd", local, call(unix.SYS_USERFAULTFD), eperm},

		// fixed-output builds: no AF_UNIX socket (CVE-2024-27297)
		{"socket AF_UNIX (fixed-output)", fod, call(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM), eperm},
		{"socket AF_UNIX high garbage (fixed-output)", fod, call(unix.SYS_SOCKET, hi|unix.AF_UNIX, unix.SOCK_STREAM), eperm},
		{"socket AF_PACKET (fixed-output)", fod, call(unix.SYS_SOCKET, unix.AF_PACKET), eperm},
		// without Landlock scopes, socketpair too (sendto with an address)
		{"socketpair (fixed-output, no Landlock scope)", fodUnscoped, call(unix.SYS_SOCKETPAIR, unix.AF_UNIX), eperm},
		{"socket AF_INET (fixed-output, no Landlock scope)", fodUnscoped, call(unix.SYS_SOCKET, unix.AF_INET), allow},
		{"socketpair (sandboxed, no Landlock scope)", local, call(unix.SYS_SOCKETPAIR, unix.AF_UNIX), allow},

		// foreign ABI and x32 numbers
		{"i386 ABI", local, seccompData{nr: 15, arch: unix.AUDIT_ARCH_I386}, kill},
		{"x32 chmod", local, call(unix.SYS_CHMOD|0x40000000, 0, 0o4755), kill},
	} {
		if v := runBPF(t, tc.prog, tc.d); v != tc.want {
			t.Errorf("%s → %s, want %s", tc.what, verdict(v), verdict(tc.want))
		}
	}
}

package confine

import "golang.org/x/sys/unix"

const nativeAuditArch = unix.AUDIT_ARCH_X86_64

// x32 shares AUDIT_ARCH_X86_64 with the native ABI and differs only by bit 30
// of the syscall number (__X32_SYSCALL_BIT); its numbers would otherwise slip
// past a table written in native numbers.
const x32SyscallBit = 0x40000000

func archPrologue() []unix.SockFilter {
	return []unix.SockFilter{
		jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, x32SyscallBit, 0, 1),
		ret(unix.SECCOMP_RET_KILL_PROCESS),
	}
}

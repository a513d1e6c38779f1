package confine

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock, applied to every thread of the process.
//
// landlock_restrict_self restricts only the calling thread before ABI 8
// (LANDLOCK_RESTRICT_SELF_TSYNC), and this kernel has ABI 7. A Go process has
// several threads before main runs, so restricting "before threads exist" is
// impossible. We call landlock_restrict_self on every thread with
// syscall.AllThreadsSyscall, which stops the world, runs the call on each M
// and fails as a whole if any thread fails. It returns ENOTSUP in a cgo
// binary; the privnix children are built with CGO_ENABLED=0, and Apply fails
// closed otherwise. Each thread ends up in its own (identical) domain; threads
// created later inherit their creator's. Signals between threads of one
// process stay allowed under LANDLOCK_SCOPE_SIGNAL (the kernel exempts the
// same thread group), which the runtime needs for preemption.
//
// Finding, checked on this kernel by TestLandlockDirFDNoExemption: a
// directory fd opened before restrict_self gives no exemption. Creating a
// file with openat(dirfd, name, O_CREAT…) is checked against the rules for
// dirfd's place in the hierarchy like any path. So a process that writes
// beneath a handed-in directory fd needs a write rule for that directory:
// Options.WritableDirFDs (by fd) or Options.WritablePaths (by path). Only
// files already open when the domain starts keep their access.

// landlockRulesetAttr is struct landlock_ruleset_attr up to ABI 6 (scoped).
// x/sys's LandlockRulesetAttr also carries newer "quiet" fields; we pass the
// size of what we fill.
type landlockRulesetAttr struct {
	handledFS  uint64
	handledNet uint64
	scoped     uint64
}

const (
	llReadFile  = unix.LANDLOCK_ACCESS_FS_READ_FILE
	llReadDir   = unix.LANDLOCK_ACCESS_FS_READ_DIR
	llFileRight = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	// What a writable directory grants: make regular files, directories and
	// symlinks, write and truncate them. No removal, no rename in or out
	// (REFER), no device nodes, sockets or fifos.
	llWrite = unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_SYM
)

// landlockABI returns the kernel's Landlock ABI version, or 0 if Landlock is
// not available.
func landlockABI() int {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0
	}
	return int(v)
}

// handled returns every access right the given ABI knows: handling a right
// and granting it nowhere is how Landlock denies it.
func handled(abi int) landlockRulesetAttr {
	var a landlockRulesetAttr
	if abi >= 1 {
		a.handledFS = (unix.LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1 // EXECUTE … MAKE_SYM
	}
	if abi >= 2 {
		a.handledFS |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		a.handledFS |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 4 {
		a.handledNet = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
	}
	if abi >= 5 {
		a.handledFS |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	if abi >= 6 {
		a.scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
	}
	return a
}

// landlockNetPortAttr is struct landlock_net_port_attr (ABI ≥ 4); x/sys
// does not define it yet.
type landlockNetPortAttr struct {
	allowed uint64
	port    uint64
}

const landlockRuleNetPort = 2 // LANDLOCK_RULE_NET_PORT

type landlockRule struct {
	fd     int // any fd for the file or directory; not closed here
	access uint64
	what   string // for errors
}

// restrictLandlock builds a ruleset from rules and restricts every thread.
// The caller must already have set no_new_privs on every thread.
func restrictLandlock(abi int, rules []landlockRule, connectPorts []uint16) error {
	attr := handled(abi)
	rfd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET,
		uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if e != 0 {
		return fmt.Errorf("landlock_create_ruleset: %w", e)
	}
	defer unix.Close(int(rfd))
	for _, r := range rules {
		var st unix.Stat_t
		if err := unix.Fstat(r.fd, &st); err != nil {
			return fmt.Errorf("landlock rule for %s: %w", r.what, err)
		}
		access := r.access & attr.handledFS
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			access &= llFileRight // the kernel rejects directory rights on a file
		}
		pb := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(r.fd)}
		_, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, rfd, unix.LANDLOCK_RULE_PATH_BENEATH,
			uintptr(unsafe.Pointer(&pb)), 0, 0, 0)
		if e != 0 {
			return fmt.Errorf("landlock rule for %s: %w", r.what, e)
		}
	}
	for _, port := range connectPorts {
		if attr.handledNet == 0 {
			break // no network rights on this kernel: nothing to open up
		}
		np := landlockNetPortAttr{allowed: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP, port: uint64(port)}
		_, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, rfd, landlockRuleNetPort,
			uintptr(unsafe.Pointer(&np)), 0, 0, 0)
		if e != 0 {
			return fmt.Errorf("landlock rule for TCP port %d: %w", port, e)
		}
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, rfd, 0, 0); e != 0 {
		return fmt.Errorf("landlock_restrict_self on all threads: %w", e)
	}
	return nil
}

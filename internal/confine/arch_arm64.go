package confine

import "golang.org/x/sys/unix"

const nativeAuditArch = unix.AUDIT_ARCH_AARCH64

// arm64 has no second ABI under the same AUDIT_ARCH (arm32 compat tasks
// report AUDIT_ARCH_ARM and fail the arch check).
func archPrologue() []unix.SockFilter { return nil }

//go:build linux && !amd64 && !arm64

package confine

import "golang.org/x/sys/unix"

// Only amd64 and arm64 have been audited; elsewhere the arch check matches
// nothing real, so Apply refuses before installing anything.
const nativeAuditArch = 0

func archPrologue() []unix.SockFilter { return nil }

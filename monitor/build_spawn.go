package monitor

import (
	"log/slog"
	"os"
	"syscall"
)

// newBuildSpawner starts the second spawner: its thread keeps the full
// bounding set, because privnix-build starts as root and must mount, pivot
// and chroot before it demotes itself to the build user (buildproc.Setup
// empties its own bounding set before exec). It starts nothing else.
func newBuildSpawner(bins binaries, log *slog.Logger) *spawner {
	s := &spawner{bins: bins, log: log, reqs: make(chan spawnRequest), keepBounding: true}
	go s.loop()
	return s
}

// buildCloneflags is buildproc.Cloneflags (privnixd may not link buildproc):
// mount, PID, IPC and UTS namespaces, and network unless the build is
// fixed-output. buildproc.Setup checks them against the host's.
func buildCloneflags(network bool) uintptr {
	f := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if !network {
		f |= syscall.CLONE_NEWNET
	}
	return f
}

// buildUserNS is the spawn of privnix-build by a privnixd that is not root
// (as nix-daemon's sandbox without build users): a new user namespace too,
// in which privnixd's uid and gid are the build's sandboxUID:sandboxGID and
// nothing else is mapped (no setgroups). The build process keeps, as
// ambient capabilities in that namespace only, what its set-up needs
// (mounts, pivot_root, chown of the store view, its bounding set); it
// drops them all before it execs the builder (buildproc.Setup).
func buildUserNS(a *syscall.SysProcAttr) {
	a.Cloneflags |= syscall.CLONE_NEWUSER
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: sandboxUID, HostID: os.Getuid(), Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: sandboxGID, HostID: os.Getgid(), Size: 1}}
	a.GidMappingsEnableSetgroups = false
	a.AmbientCaps = []uintptr{capChown, capDacOverride, capFowner, capSetgid, capSetuid, capSetpcap, capNetAdmin, capSysAdmin, capSysChroot}
}

// Capability numbers (linux/capability.h) for buildUserNS.
const (
	capChown       = 0
	capDacOverride = 1
	capFowner      = 3
	capSetgid      = 6
	capSetuid      = 7
	capSetpcap     = 8
	capNetAdmin    = 12
	capSysChroot   = 18
	capSysAdmin    = 21
)

package monitor

import (
	"log/slog"
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

// Command privnix-build is the build process: privnixd execs one per build,
// as root, in new mount, PID, IPC and UTS namespaces (and a new network
// namespace unless the build is fixed-output). It receives the build
// (ipc/msg.BuildJob), builds the sandbox, becomes the build user, confines
// itself (confine.ApplyBuilder), says SandboxReady and execs the builder
// (package buildproc has the ordered sequence).
//
// Its root phase reads nothing a user chose except through the validated
// job, writes only into directories nobody else can write, and ends before
// the first byte of a derivation-chosen file is written.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"privnix/buildproc"
	"privnix/ipc"
)

// procName is what ps shows (at most 15 bytes and a NUL).
var procName = []byte("privnix-build\x00")

// The fixed fd layout the monitor starts every child with.
const (
	ipcFd = 3
	logFd = 4
)

func main() {
	// run returns only on failure: on success the builder replaced us.
	err := run()
	fmt.Fprintf(os.Stderr, "privnix-build: %v\n", err)
	os.Exit(1)
}

func run() error {
	// The monitor execs us through /proc/self/fd/N, so the kernel named us "N".
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&procName[0])), 0, 0, 0)
	mon, err := ipc.NewConn(os.NewFile(ipcFd, "monitor"))
	if err != nil {
		return err
	}
	logs, err := ipc.NewConn(os.NewFile(logFd, "log"))
	if err != nil {
		return err
	}
	log := slog.New(ipc.NewLogHandler(logs, slog.LevelInfo))
	job, err := buildproc.AwaitJob(mon)
	if err != nil {
		return err
	}
	// Setup returns only on failure; on success the builder has replaced us.
	err = buildproc.Setup(job, mon)
	f := buildproc.Failed(err)
	log.Error("sandbox set-up failed", "stage", f.Stage, "err", err)
	if serr := mon.Send(f); serr != nil {
		return fmt.Errorf("%w (and reporting it: %v)", err, serr)
	}
	return err
}

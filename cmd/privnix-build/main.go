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
	"os"

	"golang.org/x/sys/unix"

	"privnix/buildproc"
	"privnix/internal/child"
)

// killArg0 is the name privnixd gives this binary when it starts it as a
// build user to end every process of that user (killAll).
const killArg0 = "privnix-kill-user"

func main() {
	if len(os.Args) == 1 && os.Args[0] == killArg0 {
		os.Exit(killAll())
	}
	// run returns only on failure: on success the builder replaced us.
	err := run()
	fmt.Fprintf(os.Stderr, "privnix-build: %v\n", err)
	os.Exit(1)
}

func run() error {
	ch, err := child.Start("privnix-build")
	if err != nil {
		return err
	}
	mon, log := ch.Monitor, ch.Log
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

// killAll is kill(-1, SIGKILL) as the uid privnixd started us as (a build
// user): every process whose real or saved uid is ours dies, except us
// (DESIGN, sealing step 1's last resort). Never as root, never holding a
// capability (CAP_KILL would make kill(-1) reach every process).
func killAll() int {
	if os.Getuid() == 0 || os.Geteuid() == 0 {
		fmt.Fprintf(os.Stderr, "%s: refusing to run as root\n", killArg0)
		return 2
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil || data[0].Effective|data[1].Effective|data[0].Permitted|data[1].Permitted != 0 {
		fmt.Fprintf(os.Stderr, "%s: holding capabilities (%v): refusing kill(-1)\n", killArg0, err)
		return 2
	}
	if err := unix.Kill(-1, unix.SIGKILL); err != nil && err != unix.ESRCH {
		fmt.Fprintf(os.Stderr, "%s: kill(-1): %v\n", killArg0, err)
		return 1
	}
	return 0
}

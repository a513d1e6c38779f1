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

	"privnix/buildproc"
	"privnix/internal/child"
)

func main() {
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

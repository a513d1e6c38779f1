// Command privnix-storeproc is the store worker: privnixd execs one for an
// upload, as a throw-away unprivileged uid, and it writes that upload's bytes
// beneath the staging directory it is handed (package storeproc), then exits
// — or, when the job says More, serves the next upload of the same client
// connection, in a new staging directory beside the first.
//
// Powers left after start: read the data pipe; create files (exclusively),
// directories and symlinks beneath its staging directory and write them;
// send only on its two monitor channels; no other file opened for writing,
// no unlink, rename or link, no new sockets or connect, no io_uring, no
// exec, no privileges (no_new_privs, seccomp, Landlock; confine.StoreProc).
package main

import (
	"golang.org/x/sys/unix"

	"privnix/internal/child"
	"privnix/internal/confine"
	"privnix/ipc/msg"
	"privnix/storeproc"
)

func main() { child.Main("privnix-storeproc", run) }

func run() error {
	if err := child.RefuseRoot(); err != nil {
		return err
	}
	chans, err := storeproc.IdentifyFDs(child.MonitorFd, child.LogFd)
	if err != nil {
		return err
	}
	ch, err := child.Start("privnix-store")
	if err != nil {
		return err
	}
	mon, log := ch.Monitor, ch.Log
	// The fds the channels live on now: the only ones sendmsg may use.
	sendFDs, err := storeproc.FindFDs(chans)
	if err != nil {
		return err
	}
	job, drvJob, err := storeproc.AwaitAny(mon)
	if err != nil {
		return err
	}
	if drvJob != nil {
		// Parsing derivations: nothing to write, so the frontend's profile.
		if err := confine.Apply(confine.Frontend, confine.Options{SendFDs: sendFDs, InheritedCredentials: drvJob.SharedUID}); err != nil {
			log.Error("confinement failed; not parsing", "err", err)
			_ = mon.Send(msg.Errorf(msg.ClassInternal, "the store worker could not confine itself"))
			return err
		}
		return storeproc.ServeDrvs(mon, drvJob, log)
	}
	wdir, err := storeproc.WritableDir(job)
	if err == nil {
		opts := confine.Options{
			WritableDirFDs:       []int{wdir},
			SendFDs:              sendFDs,
			InheritedCredentials: job.SharedUID,
		}
		err = confine.Apply(confine.StoreProc, opts)
		unix.Close(wdir)
	}
	if err != nil {
		job.Close()
		log.Error("confinement failed; not reading the upload", "err", err)
		_ = mon.Send(msg.Errorf(msg.ClassInternal, "the store worker could not confine itself"))
		return err
	}
	// One job, one answer, then exit — or, while the monitor says More, the
	// next job of the same connection: the monitor kills what is left.
	return storeproc.Serve(mon, job, log)
}

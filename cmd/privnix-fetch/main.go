// Command privnix-fetch is the binary-cache client: privnixd execs one when
// a request needs substituters, as a throw-away unprivileged uid, and asks it
// for nix-cache-info, narinfo and NARs (package fetcher). It parses the
// caches' text and undoes their compression; the monitor gets structured
// answers and checks them, and each NAR goes down a pipe to a storeproc.
//
// Powers left after start: IPv4/IPv6 sockets (HTTP, DNS); read the file://
// caches' directories, the resolver files and CA certificates; write only to
// fds it holds; send fds only on its monitor channels; no AF_UNIX socket, no
// file opened for writing, no exec, no privileges (no_new_privs, seccomp,
// Landlock; confine.Fetcher).
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"privnix/fetcher"
	"privnix/internal/child"
	"privnix/internal/confine"
	"privnix/ipc/msg"
)

// hostFiles are read for DNS and TLS when they exist.
var hostFiles = []string{"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/services",
	"/etc/ssl", "/etc/pki", "/etc/ca-certificates", "/usr/share/ca-certificates", "/usr/local/share/ca-certificates"}

func main() { child.Main("privnix-fetch", run) }

func run() error {
	if err := child.RefuseRoot(); err != nil {
		return err
	}
	ch, err := child.Start("privnix-fetch")
	if err != nil {
		return err
	}
	mon, logs, log := ch.Monitor, ch.Logs, ch.Log
	// The channels' fds: the only ones sendmsg may use.
	monFd, err := mon.Fd()
	if err != nil {
		return err
	}
	logsFd, err := logs.Fd()
	if err != nil {
		return err
	}
	sendFDs := []int{monFd, logsFd}
	job, err := fetcher.AwaitJob(mon)
	if err != nil {
		return err
	}
	if err := mon.SetStoreDir(job.StoreDir); err != nil {
		return err
	}
	caches, infos := fetcher.Caches(job)
	var readable []string
	for _, c := range caches {
		if c != nil && c.Dir() != "" {
			readable = append(readable, c.Dir())
		}
	}
	for _, f := range hostFiles {
		if _, err := os.Stat(f); err == nil {
			readable = append(readable, f)
		}
	}
	for i, c := range caches {
		if c != nil && c.Dir() != "" {
			if _, err := os.Stat(c.Dir()); err != nil {
				// Landlock opens every path: one we cannot reach is refused here.
				infos[i] = msg.CacheInfo{Err: fmt.Sprintf("binary cache '%s' cannot be read: %v", c.URL, err)}
				caches[i] = nil
				readable = remove(readable, c.Dir())
			}
		}
	}
	var ports []uint16
	for _, c := range caches {
		if c != nil && c.Port() != 0 {
			ports = append(ports, c.Port())
		}
	}
	opts := confine.Options{ReadOnlyPaths: readable, ConnectTCPPorts: ports, SendFDs: sendFDs, InheritedCredentials: job.SharedUID}
	if err := confine.Apply(confine.Fetcher, opts); err != nil {
		log.Error("confinement failed; not fetching", "err", err)
		_ = mon.Send(msg.Errorf(msg.ClassInternal, "the fetcher could not confine itself"))
		return err
	}
	tuneGC()
	return fetcher.Serve(mon, job, caches, infos, log)
}

// tuneGC lets the heap grow to a few xz dictionaries between collections.
// Each xz NAR allocates its dictionary (8 MiB at xz's default level, however
// small the NAR), so with Go's default GOGC nearly every NAR of a closure
// started a collection: most of the fetcher's CPU (substitute-1000 bench:
// CPU ratio 4.6 to about 2.5). The memory limit keeps the four fetchers of a
// request near their former footprint; a NAR whose decoder needs more (a
// large zstd window) only makes collections more frequent (the runtime
// gives them at most half the CPU).
func tuneGC() {
	debug.SetGCPercent(400)
	debug.SetMemoryLimit(32 << 20)
}

func remove(list []string, s string) []string {
	out := list[:0]
	for _, e := range list {
		if e != s {
			out = append(out, e)
		}
	}
	return out
}

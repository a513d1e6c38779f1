// Package confine is how an unprivileged privnix child locks itself down right
// after it starts: identity checks, no_new_privs, non-dumpable, no core
// dumps, Landlock on every thread, then a seccomp allow-list on every thread.
//
// What each profile may still do (the pledge line; the tables in policy.go
// are authoritative):
//
//	Frontend:  run Go; read, write, recvmsg on fds it holds; sendmsg only on
//	           Options.SendFDs; open read-only beneath Options.ReadOnlyPaths.
//	           No file creation or write-open, no chmod/chown, no socket,
//	           connect or io_uring, no exec or fork, no signals to other
//	           processes, no ptrace, mount, namespaces, setuid, prctl.
//	StoreProc: Frontend, plus beneath Options.WritablePaths/WritableDirFDs:
//	           create files (O_CREAT|O_EXCL|O_WRONLY only), mkdirat,
//	           symlinkat, fchmod without setuid/setgid/sticky bits, ftruncate,
//	           fallocate, fsync. No unlink, rename, link or mknod.
//	Fetcher, Builder: not written yet; Apply refuses them.
//
// Requirements on the spawner (the monitor):
//   - demote with SysProcAttr.Credential (non-zero uid and gid, Groups empty);
//   - start the child with confine.Spawn, so its capability bounding set is
//     empty, and without CLONE_NEWUSER (PID, mount, IPC and network
//     namespaces need none when the monitor is root);
//   - build the child binary without cgo (CGO_ENABLED=0 or -tags
//     netgo,osusergo): Landlock reaches every thread through
//     syscall.AllThreadsSyscall, which cgo binaries do not support. Apply
//     fails with ErrUnsupported otherwise.
//
// Requirements on the child: call Apply before reading anything from a peer,
// exit if it fails, and open beforehand anything it will need that its
// profile cannot open later (for instance, touch time.Local before Apply if
// local time matters: /etc/localtime is not readable afterwards unless listed).
// After Apply even Status needs "/proc/self" among the ReadOnlyPaths.
package confine

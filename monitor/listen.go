package monitor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// listen returns the daemon socket: the one systemd passed (LISTEN_FDS=1,
// LISTEN_PID = our pid, fd 3), or a fresh one at path with mode 0666. Access
// control is the socket directory's mode (left to the admin, as the Nix manual
// says) plus the policy check at accept. ours is whether privnixd created it
// (and removes it when it stops).
func listen(path string, getenv func(string) string) (l *net.UnixListener, ours bool, err error) {
	if l, ok, err := listenerFromSystemd(getenv); ok || err != nil {
		return l, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, fmt.Errorf("creating the socket directory: %w", err)
	}
	// A stale socket from an earlier run is removed; anything else is left alone.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, false, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, false, err
		}
	}
	// Bound and listening under a temporary name, then renamed into place:
	// whoever sees the socket at path can connect (between bind and listen
	// a client would get "connection refused").
	removeStaleSockets(path + ".new-*") // left by a privnixd killed before its rename
	tmp := fmt.Sprintf("%s.new-%d", path, os.Getpid())
	old := unix.Umask(0o111) // the socket is created 0666: access is the directory's job
	l, err = net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, false, err
	}
	l.SetUnlinkOnClose(false)
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, false, err
	}
	return l, true, nil
}

// removeStaleSockets removes the sockets (and nothing else) matching pattern.
func removeStaleSockets(pattern string) {
	names, _ := filepath.Glob(pattern)
	for _, name := range names {
		if fi, err := os.Lstat(name); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(name)
		}
	}
}

func listenerFromSystemd(getenv func(string) string) (*net.UnixListener, bool, error) {
	pid, fds := getenv("LISTEN_PID"), getenv("LISTEN_FDS")
	if pid == "" || fds == "" {
		return nil, false, nil
	}
	if pid != strconv.Itoa(os.Getpid()) {
		return nil, false, nil
	}
	if fds != "1" {
		return nil, true, fmt.Errorf("LISTEN_FDS=%s: privnixd takes exactly one socket", fds)
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	unix.CloseOnExec(3)
	f := os.NewFile(3, "systemd-socket")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, true, fmt.Errorf("socket from systemd: %w", err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, true, errors.New("socket from systemd is not a Unix socket")
	}
	return ul, true, nil
}

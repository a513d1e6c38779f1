package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"privnix/ipc"
	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/nix/storepath"
)

// The admin channel (ipc/msg/admin.go): a Unix socket beside the daemon
// socket, mode 0600, on which only uid 0 (or privnixd's own uid, when it does
// not run as root) is answered, and only one request: StatusRequest. The
// answer comes from the monitor's own records; nothing the frontends said
// enters it except as the monitor recorded it.

// adminTimeout bounds one admin exchange.
const adminTimeout = 10 * time.Second

func (m *Monitor) listenAdmin() (*net.UnixListener, error) {
	path := m.cfg.Paths.AdminSocket()
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(true)
	// The peer's uid is checked at accept; the mode keeps others from even
	// connecting.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (m *Monitor) serveAdmin(ctx context.Context, l *net.UnixListener) {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Error("admin socket: accept failed", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go m.adminSession(c)
	}
}

// adminSession answers one StatusRequest from root, then closes.
func (m *Monitor) adminSession(c *net.UnixConn) {
	defer c.Close()
	p, err := peerOf(c)
	if err != nil {
		m.log.Error("admin socket: SO_PEERCRED failed; connection dropped", "err", err)
		return
	}
	if p.UID != 0 && p.UID != uint32(os.Geteuid()) {
		m.audit.Warn("admin request refused: not root", "client_uid", p.UID, "client_pid", p.PID)
		return
	}
	f, err := c.File()
	if err != nil {
		return
	}
	conn, err := ipc.NewConn(f)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(adminTimeout))
	conn.SetWriteDeadline(time.Now().Add(adminTimeout))
	if err := conn.SetStoreDir(string(m.store.dir)); err != nil {
		return
	}
	req, fds, err := conn.Recv()
	closeFiles(fds)
	if err != nil {
		return
	}
	if _, ok := req.(*msg.StatusRequest); !ok || len(fds) != 0 {
		m.log.Warn("admin socket: not a status request; connection dropped", "kind", req.Kind(), "client_pid", p.PID)
		return
	}
	for _, frame := range m.status() {
		if err := conn.Send(frame); err != nil {
			m.log.Warn("admin socket: answering failed", "err", err)
			return
		}
	}
}

// status is the daemon's state as Status frames.
func (m *Monitor) status() []*msg.Status {
	var conns msg.StatusConns
	var builds msg.StatusBuilds
	m.mu.Lock()
	for s := range m.conns {
		conns = append(conns, msg.StatusConn{UID: s.peer.UID, PID: s.peer.PID, User: s.peer.User, Trusted: s.trusted,
			FrontendPID: int32(s.fe.cmd.Process.Pid), FrontendUID: s.fe.uid, Since: s.since.Unix()})
	}
	for b := range m.running {
		builds = append(builds, msg.StatusBuild{Drv: msg.StorePath(m.store.dir.String(b.drv)), BuildUser: b.user.name,
			BuildUID: b.user.uid, ClientUID: b.s.peer.UID, ClientPID: b.s.peer.PID, Since: b.since.Unix()})
	}
	m.mu.Unlock()
	last := &msg.Status{Version: NixVersion, Started: m.started.Unix()}
	if err := m.store.with(func(db *storedb.DB) (err error) {
		last.StorePaths, last.NarBytes, err = db.Totals()
		return err
	}); err != nil {
		m.log.Warn("admin socket: counting the store failed", "err", err)
	}
	var frames []*msg.Status
	for len(conns) > msg.MaxStatusEntries || len(builds) > msg.MaxStatusEntries {
		f := &msg.Status{More: true}
		f.Connections, conns = cut(conns, msg.MaxStatusEntries)
		f.Builds, builds = cut(builds, msg.MaxStatusEntries)
		frames = append(frames, f)
	}
	last.Connections, last.Builds = conns, builds
	return append(frames, last)
}

func cut[S ~[]E, E any](s S, n int) (head, rest S) {
	n = min(n, len(s))
	return s[:n], s[n:]
}

// runningBuild is a build between taking its build user and giving it back.
type runningBuild struct {
	drv   storepath.Path
	user  buildUser
	s     *session
	since time.Time
}

// buildStarted records a build for status and the audit log; the function
// it returns records its end with the outcome's status.
func (m *Monitor) buildStarted(s *session, drv storepath.Path, u buildUser, since time.Time) func(*outcome) {
	b := &runningBuild{drv: drv, user: u, s: s, since: since}
	m.mu.Lock()
	m.running[b] = struct{}{}
	m.mu.Unlock()
	shown := m.store.dir.String(drv)
	s.audit.Info("build started", "drv", shown, "build_user", u.name, "build_uid", u.uid)
	return func(o *outcome) {
		m.mu.Lock()
		delete(m.running, b)
		m.mu.Unlock()
		s.audit.Info("build finished", "drv", shown, "build_user", u.name, "build_uid", u.uid, "status", o.status, "error", o.msg)
	}
}

package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"privnix/ipc"
	"privnix/ipc/msg"
	"privnix/nix/conf"
)

// peer is a client as the kernel reported it at accept time. It is the only
// source of identity: nothing a child says changes it.
type peer struct {
	UID, GID uint32
	PID      int32
	User     string
}

// session is one client connection: the identity the monitor read itself, the
// decision policy made, and the frontend bound to it.
type session struct {
	m       *Monitor
	peer    peer
	trusted bool
	fe      *child
	log     *slog.Logger
	audit   *slog.Logger // the audit sink, with the client's identity
	since   time.Time    // accepted
	ups     uploads
	snap    *snapshot // the configuration this connection was accepted under
	hangup  int       // the monitor's copy of the client's socket, only polled for hang-up (never read); 0 if none

	optMu sync.Mutex
	opts  *conf.Settings // the client's SetOptions applied; guarded by optMu
}

func (m *Monitor) serveClient(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	p, err := peerOf(c)
	if err != nil {
		m.log.Error("SO_PEERCRED failed; connection dropped", "err", err)
		return
	}
	// nix-daemon opens the store per connection; scripts rely on wiping the
	// store and state directories between two connections.
	if err := m.store.refresh(m); err != nil {
		m.log.Error("reopening the store failed; connection dropped", "err", err)
		return
	}
	snap := m.current()
	d := m.decideConnect(&p, snap)
	ids := []any{"client_uid", p.UID, "client_pid", p.PID, "user", p.User}
	audit := m.audit.With(ids...)
	if !m.admitUser(p.UID, snap.set.MaxConnectionsPerUser) {
		d = connectDecision{refusal: fmt.Sprintf("user '%s' has too many connections to the Nix daemon (privnix-max-connections-per-user = %d)",
			p.User, snap.set.MaxConnectionsPerUser), rule: "privnix-max-connections-per-user"}
	} else {
		defer m.leaveUser(p.UID)
	}
	if d.refusal != "" {
		audit.Warn("connection refused", "rule", d.rule, "reason", d.refusal)
	} else {
		audit.Info("connection accepted", "trusted", d.trusted)
	}
	fe, err := m.pool.take(ctx)
	if err != nil {
		return
	}
	s := &session{m: m, peer: p, trusted: d.trusted, fe: fe, snap: snap, since: time.Now(),
		log:   m.log.With(ids...).With("frontend_pid", fe.cmd.Process.Pid, "frontend_uid", fe.uid),
		audit: audit.With("frontend_pid", fe.cmd.Process.Pid, "frontend_uid", fe.uid)}
	if err := s.bind(c, d.refusal); err != nil {
		s.log.Error("binding the frontend failed", "err", err)
		m.pool.release(fe)
		return
	}
	s.hangup = dupForHangup(c)
	c.Close() // the frontend has its own copy now
	if s.hangup != 0 {
		defer unix.Close(s.hangup)
	}
	m.track(s, true)
	defer m.track(s, false)
	s.serve()
	m.pool.release(fe)
	s.end()
}

// bind hands the client's socket to the frontend with the session the monitor
// recorded. From here on every request on that channel is answered for this
// identity only.
func (s *session) bind(c *net.UnixConn, refusal string) error {
	f, err := c.File()
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.fe.conn.SetStoreDir(s.m.cfg.Paths.StoreDir); err != nil {
		return err
	}
	return s.fe.conn.Send(msg.Session{HelloOK: msg.HelloOK{
		Uid:          uint64(s.peer.UID),
		Trusted:      s.trusted,
		User:         s.peer.User,
		Refusal:      refusal,
		StoreDir:     s.m.cfg.Paths.StoreDir,
		NixVersion:   NixVersion,
		MaxVerbosity: 7,
		SharedUID:    !s.m.root,
	}}, f)
}

// serve answers the frontend's requests until it closes its channel or
// breaks the protocol, in which case it is killed. The monitor goes on.
func (s *session) serve() {
	for {
		req, fds, err := s.fe.conn.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.audit.Warn("frontend killed: bad message", "err", err)
			}
			closeFiles(fds)
			return
		}
		rep, err := dispatch(s, req, fds)
		closeFiles(fds)
		if err != nil {
			s.audit.Warn("frontend killed: request refused as a protocol violation", "kind", req.Kind(), "err", err)
			return
		}
		s.auditRefusal(req, rep)
		err = s.send(rep)
		closeFiles(rep.fds)
		if err != nil {
			s.log.Error("answering the frontend failed", "kind", req.Kind(), "err", err)
			return
		}
	}
}

// end drops what the connection held: its uploads in flight and its
// temporary roots.
func (s *session) end() {
	s.ups.mu.Lock()
	ups := s.ups.byID
	s.ups.byID = nil
	s.ups.mu.Unlock()
	for _, up := range ups {
		s.abandon(up)
	}
	if w := s.ups.takeSpare(); w != nil {
		s.m.releaseWorker(w) // the worker kept for a next upload
	}
	s.m.roots.dropSession(s)
}

func (s *session) send(rep reply) error {
	for i, m := range rep.msgs {
		var fds []*os.File
		if i == len(rep.msgs)-1 {
			fds = rep.fds
		}
		if err := s.fe.conn.Send(m, fds...); err != nil {
			return err
		}
	}
	return nil
}

func (m *Monitor) track(s *session, live bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if live {
		m.conns[s] = struct{}{}
	} else {
		delete(m.conns, s)
	}
}

func (m *Monitor) admitUser(uid, limit uint32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if uint32(m.perUser[uid]) >= limit {
		return false
	}
	m.perUser[uid]++
	return true
}

func (m *Monitor) leaveUser(uid uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.perUser[uid]--; m.perUser[uid] <= 0 {
		delete(m.perUser, uid)
	}
}

func peerOf(c *net.UnixConn) (peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{}, err
	}
	if cerr != nil {
		return peer{}, cerr
	}
	return peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, nil
}

// forwardLogs copies a child's log channel into the monitor's log, stamped
// with the child's role, pid and uid. Text from a child is only ever an
// attribute value, never a message or a format. Each child gets a budget
// (logBurst records, refilled at logRate a second): a flood is dropped and
// counted, so it cannot drown the monitor's own records.
func (m *Monitor) forwardLogs(c *child) {
	l := m.log.With("role", c.role, "pid", c.cmd.Process.Pid, "uid", c.uid)
	budget, last := float64(logBurst), time.Now()
	dropped := 0
	defer func() {
		if dropped > 0 {
			l.Warn("child log records dropped: over the rate limit", "dropped", dropped)
		}
	}()
	for {
		rec, fds, err := c.logs.Recv()
		closeFiles(fds)
		if err != nil {
			return
		}
		lm, ok := rec.(*msg.Log)
		if !ok {
			l.Warn("child sent a non-log message on its log channel; no longer reading it", "kind", rec.Kind())
			return
		}
		now := time.Now()
		budget = min(logBurst, budget+now.Sub(last).Seconds()*logRate)
		last = now
		if budget < 1 {
			dropped++
			continue
		}
		budget--
		args := make([]any, 0, 2+2*len(lm.Attrs))
		args = append(args, "msg", lm.Msg)
		for _, a := range lm.Attrs {
			args = append(args, "child."+a.Key, a.Value)
		}
		l.Log(context.Background(), ipc.SlogLevel(lm.Level), "child log", args...)
	}
}

// A child's log budget.
const (
	logBurst = 200
	logRate  = 50 // records a second
)

// dupForHangup returns a copy (fd 3 or above) of the client's socket for
// clientGone, or 0.
// It is duplicated through the raw fd so that the socket's non-blocking mode,
// which it shares with the frontend's copy, is left alone.
func dupForHangup(c *net.UnixConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	dup := -1
	if rc.Control(func(fd uintptr) { dup, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3) }) != nil || dup < 0 {
		return 0
	}
	return dup
}

// clientGone reports whether the client has hung up, without reading
// anything from its socket. The connection's temporary roots then protect
// nothing, though its frontend may not have noticed yet: nix-daemon's go with
// the connection's process as soon as it sees the end of its socket.
func (s *session) clientGone() bool {
	if s.hangup == 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(s.hangup), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 1 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP) != 0
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// Command privnix-frontend serves one Nix client connection: it speaks the
// worker protocol with the client and turns each operation into requests to
// the monitor. privnixd execs it ahead of time, as an unprivileged uid of its
// own, and binds it to exactly one client.
//
// Powers left after start: read and write its client socket and its two
// monitor channels (fds 3 and 4); read files beneath the store directory; no
// file creation, no new sockets, no exec, no privileges (no_new_privs,
// seccomp, Landlock).
package main

import (
	"context"
	"fmt"
	"net"
	"os"

	"privnix/frontend"
	"privnix/internal/child"
	"privnix/internal/confine"
	"privnix/internal/rawsock"
	"privnix/ipc"
	"privnix/ipc/msg"
)

func main() { child.Main("privnix-frontend", run) }

func run() error {
	if err := child.RefuseRoot(); err != nil {
		return err
	}
	ch, err := child.Start("privnix-fe")
	if err != nil {
		return err
	}
	mon, logs, log := ch.Monitor, ch.Logs, ch.Log
	sess, client, err := awaitClient(mon)
	if err != nil {
		return err
	}
	defer client.Close()
	// The store is the only place this process may read by path.
	monFd, err := mon.Fd()
	if err != nil {
		return err
	}
	logsFd, err := logs.Fd()
	if err != nil {
		return err
	}
	opts := confine.Options{ReadOnlyPaths: []string{sess.StoreDir}, SendFDs: []int{monFd, logsFd}, InheritedCredentials: sess.SharedUID}
	if err := confine.Apply(confine.Frontend, opts); err != nil {
		log.Error("confinement failed; not serving", "err", err)
		return err
	}
	err = frontend.Serve(context.Background(), client, frontend.Session{
		Trusted:    sess.Trusted,
		User:       sess.User,
		Refusal:    sess.Refusal,
		StoreDir:   sess.StoreDir,
		NixVersion: sess.NixVersion,
		Log:        log,
	}, &backend{mon: mon, storeDir: sess.StoreDir, client: client})
	if err != nil && err != frontend.ErrRefused {
		log.Info("connection ended", "err", err)
	}
	return nil
}

// awaitClient says Hello and waits for the monitor to bind this frontend to
// a client: the answer carries the session and the client's socket.
func awaitClient(mon *ipc.Conn) (msg.HelloOK, net.Conn, error) {
	if err := mon.Send(&msg.Hello{}); err != nil {
		return msg.HelloOK{}, nil, err
	}
	m, fds, err := mon.Recv()
	if err != nil {
		return msg.HelloOK{}, nil, err
	}
	s, ok := m.(*msg.Session)
	if !ok || len(fds) != 1 {
		closeAll(fds)
		return msg.HelloOK{}, nil, fmt.Errorf("monitor answered Hello with %v", m.Kind())
	}
	if err := mon.SetStoreDir(s.HelloOK.StoreDir); err != nil {
		fds[0].Close()
		return msg.HelloOK{}, nil, err
	}
	c, err := net.FileConn(fds[0])
	fds[0].Close()
	if err != nil {
		return msg.HelloOK{}, nil, err
	}
	rc, err := rawsock.NewConn(c)
	if err != nil {
		c.Close()
		return msg.HelloOK{}, nil, err
	}
	return s.HelloOK, rc, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

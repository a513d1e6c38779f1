package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"privnix/frontend"
	"privnix/frontend/wire"
	"privnix/internal/rawsock"
	"privnix/ipc"
	"privnix/ipc/msg"
)

// Nix's activity and result types for a build (§3.4, §3.5).
const (
	actBuild        = 105
	actBuildWaiting = 111
	resBuildLogLine = 101
	actCopyPath     = 100
	actSubstitute   = 108
)

// QueryDerivationOutputMap asks the monitor, which verifies the derivation
// itself (it never trusts this process's reading of a .drv).
func (b *backend) QueryDerivationOutputMap(ctx context.Context, drvPath string) (map[string]string, error) {
	ans, _, err := b.call(&msg.QueryDrvOutputs{Path: msg.StorePath(drvPath)})
	if err != nil {
		return nil, err
	}
	o, ok := ans.(*msg.DrvOutputs)
	if !ok {
		return nil, fmt.Errorf("monitor answered QueryDrvOutputs with %v", ans.Kind())
	}
	out := make(map[string]string, len(o.Names))
	for i, n := range o.Names {
		out[n] = string(o.Paths[i])
	}
	return out, nil
}

// QueryMissing asks the monitor, which walks the verified derivations: a
// derivation with a missing wanted output will be built, with every input
// derivation whose outputs it needs; a missing path nothing produces is
// unknown (there are no substituters).
func (b *backend) QueryMissing(ctx context.Context, targets []wire.DerivedPath) (frontend.Missing, error) {
	var m frontend.Missing
	if len(targets) == 0 {
		return m, nil
	}
	if len(targets) > msg.MaxStrings {
		return m, frontend.Errorf("too many paths (%d, at most %d)", len(targets), msg.MaxStrings)
	}
	q := &msg.QueryMissing{}
	for _, t := range targets {
		q.Targets = append(q.Targets, msg.BuildTarget{Path: msg.StorePath(t.Path), Built: t.Built, Outputs: t.Outputs})
	}
	ans, _, err := b.call(q)
	if err != nil {
		return m, err
	}
	a, ok := ans.(*msg.Missing)
	if !ok {
		return m, fmt.Errorf("monitor answered QueryMissing with %v", ans.Kind())
	}
	for _, p := range a.WillBuild {
		m.WillBuild = append(m.WillBuild, string(p))
	}
	for _, p := range a.Unknown {
		m.Unknown = append(m.Unknown, string(p))
	}
	for _, p := range a.WillSubstitute {
		m.WillSubstitute = append(m.WillSubstitute, string(p))
	}
	m.DownloadSize, m.NarSize = a.DownloadSize, a.NarSize
	return m, nil
}

// BuildPaths realises targets: the monitor substitutes and builds,
// streaming the builds' activities, log lines and warnings, which go to the
// client as Nix sends them.
func (b *backend) BuildPaths(ctx context.Context, targets []wire.DerivedPath, mode uint64) ([]wire.KeyedBuildResult, error) {
	req := &msg.Build{Mode: mode}
	for _, t := range targets {
		req.Targets = append(req.Targets, msg.BuildTarget{Path: msg.StorePath(t.Path), Built: t.Built, Outputs: t.Outputs})
	}
	if len(targets) > msg.MaxStrings {
		return nil, frontend.Errorf("too many build targets (%d, at most %d)", len(targets), msg.MaxStrings)
	}
	res, err := b.build(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(res.Results) != len(targets) {
		return nil, fmt.Errorf("monitor answered %d results for %d targets", len(res.Results), len(targets))
	}
	out := make([]wire.KeyedBuildResult, len(targets))
	for i, r := range res.Results {
		out[i].Path = targets[i]
		out[i].BuildResult = wireResult(r)
	}
	return out, nil
}

// wireResult is a monitor's BuildResult as the worker protocol has it.
func wireResult(r msg.BuildResult) wire.BuildResult {
	out := wire.BuildResult{Status: r.Status, ErrorMsg: r.ErrorMsg, TimesBuilt: r.TimesBuilt,
		StartTime: uint64(max(r.StartTime, 0)), StopTime: uint64(max(r.StopTime, 0))}
	if r.HashModulo != "" {
		for j, name := range r.OutputNames {
			id := "sha256:" + r.HashModulo + "!" + name
			_, base := r.OutputPaths[j].Split()
			out.BuiltOutputs = append(out.BuiltOutputs, wire.Pair{Key: id, Value: wire.Realisation{ID: id, OutPath: base}.JSON()})
		}
	}
	return out
}

// BuildDerivation hands the inline derivation to the monitor, which
// decides whether this user may build it, and builds it as BuildPaths does.
func (b *backend) BuildDerivation(ctx context.Context, drvPath string, d frontend.BasicDerivation, mode uint64) (wire.BuildResult, error) {
	req := &msg.BuildDerivation{DrvPath: msg.StorePath(drvPath), Mode: mode, Drv: msg.Drv{
		InputSrcs: d.InputSrcs, Platform: d.Platform, Builder: d.Builder, Args: d.Args}}
	for _, o := range d.Outputs {
		req.Drv.Outputs = append(req.Drv.Outputs, msg.DrvOutput{Name: o.Name, Path: o.Path, HashAlgo: o.HashAlgo, Hash: o.Hash})
	}
	for _, e := range d.Env {
		req.Drv.Env = append(req.Drv.Env, msg.KV{Key: e.Key, Value: e.Value})
	}
	if err := req.Validate(); err != nil {
		return wire.BuildResult{}, frontend.Errorf("privnix cannot take this derivation: %v", err)
	}
	if body, err := msg.Encode(nil, req); err != nil || len(body) > ipc.MaxFrame {
		return wire.BuildResult{}, frontend.Errorf("the derivation is larger than privnix takes inline (%d bytes)", ipc.MaxFrame)
	}
	res, err := b.build(ctx, req)
	if err != nil {
		return wire.BuildResult{}, err
	}
	if len(res.Results) != 1 {
		return wire.BuildResult{}, fmt.Errorf("monitor answered %d results for one derivation", len(res.Results))
	}
	return wireResult(res.Results[0]), nil
}

// build sends a Build or BuildDerivation and relays its events until the
// results come.
func (b *backend) build(ctx context.Context, req msg.Message) (*msg.BuildResults, error) {
	defer watchHangup(b.client, func() {
		// The client is gone: so is this connection. The monitor sees us
		// end and kills the builds nobody else waits for.
		os.Exit(0)
	})()
	log := frontend.LoggerFrom(ctx)
	acts := map[msg.StorePath]uint64{}
	waits := map[msg.StorePath]uint64{}
	substs := map[msg.StorePath][2]uint64{} // Substitute, CopyPath
	defer func() {
		for _, ids := range substs {
			log.StopActivity(ids[1])
			log.StopActivity(ids[0])
		}
		for _, id := range acts {
			log.StopActivity(id)
		}
		for _, id := range waits {
			log.StopActivity(id)
		}
	}()
	var res *msg.BuildResults
	err := b.callFrames(req, func(ans msg.Message) (bool, error) {
		switch a := ans.(type) {
		case *msg.BuildResults:
			res = a
			return false, nil
		case *msg.BuildEvent:
			switch a.Type {
			case msg.EventWaiting:
				waits[a.Drv] = log.StartActivity(wire.LvlWarn, actBuildWaiting, a.Text, nil, 0)
			case msg.EventInfo:
				log.Log(wire.LvlInfo, a.Text)
			case msg.EventPlainError:
				log.Log(wire.LvlError, a.Text)
			case msg.EventStart:
				if id, ok := waits[a.Drv]; ok {
					log.StopActivity(id)
					delete(waits, a.Drv)
				}
				acts[a.Drv] = log.StartActivity(wire.LvlInfo, actBuild, a.Text,
					[]wire.Field{{IsString: true, Str: string(a.Drv)}, {IsString: true, Str: ""}, {Int: 1}, {Int: 1}}, 0)
			case msg.EventLine:
				if id, ok := acts[a.Drv]; ok {
					log.Result(id, resBuildLogLine, []wire.Field{{IsString: true, Str: a.Text}})
				}
			case msg.EventStop:
				if id, ok := acts[a.Drv]; ok {
					log.StopActivity(id)
					delete(acts, a.Drv)
				}
			case msg.EventSubstStart:
				substs[a.Drv] = startSubstitution(log, string(a.Drv), a.Text)
			case msg.EventSubstStop:
				if ids, ok := substs[a.Drv]; ok {
					log.StopActivity(ids[1])
					log.StopActivity(ids[0])
					delete(substs, a.Drv)
				}
			case msg.EventWarn:
				log.Warn(a.Text)
			case msg.EventError:
				// As Nix's showErrorInfo: later lines indented under the message.
				log.Log(wire.LvlError, "\x1b[31;1merror:\x1b[0m "+strings.ReplaceAll(a.Text, "\n", "\n       "))
			}
			return true, nil
		default:
			return false, fmt.Errorf("monitor answered Build with %v", ans.Kind())
		}
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// watchHangup calls gone if the client closes its end of the connection
// before the returned stop is called (stop ends the watch and waits for
// it). The Nix client sends nothing while it waits for a build, so the
// socket turning readable means it hung up; if it sent bytes instead, the
// watch ends without calling gone.
func watchHangup(conn net.Conn, gone func()) (stop func()) {
	if w, ok := conn.(*rawsock.Conn); ok {
		conn = w.Conn // the socket from package net it reads with raw calls
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hungUp := false
		var buf [1]byte
		err := rc.Read(func(fd uintptr) bool {
			n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err == unix.EAGAIN || err == unix.EINTR {
				return false // not readable yet: wait again
			}
			hungUp = n == 0 || err != nil
			return true
		})
		if err == nil && hungUp {
			gone()
		}
	}()
	return func() {
		conn.SetReadDeadline(time.Now()) // wakes the watch
		<-done
		conn.SetReadDeadline(time.Time{})
	}
}

// startSubstitution starts what nix-daemon 2.8 shows for one path it
// substitutes: a Substitute activity (level 0, no text, fields path and
// cache URL) and under it a CopyPath activity at level info whose text the
// client prints ("copying path '…' from '…'"), fields path, cache URL and
// "local" (the destination store). It returns both ids.
func startSubstitution(log *frontend.Logger, path, cache string) [2]uint64 {
	p, c := wire.Field{IsString: true, Str: path}, wire.Field{IsString: true, Str: cache}
	sub := log.StartActivity(wire.LvlError, actSubstitute, "", []wire.Field{p, c}, 0)
	cp := log.StartActivity(wire.LvlInfo, actCopyPath, fmt.Sprintf("copying path '%s' from '%s'", path, cache),
		[]wire.Field{p, c, {IsString: true, Str: "local"}}, sub)
	return [2]uint64{sub, cp}
}

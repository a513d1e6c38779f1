package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"privnix/frontend"
	"privnix/frontend/wire"
	"privnix/internal/narfs/dumpfs"
	"privnix/ipc"
	"privnix/ipc/msg"
	"privnix/nix/nixhash"
)

// backend carries out a connection's operations by asking the monitor. One
// request is in flight at a time: the channel is strictly request/answer.
type backend struct {
	mu       sync.Mutex
	mon      *ipc.Conn
	storeDir string
	client   net.Conn // watched for a hang-up while a build runs (backend_build.go)
	cache    cache    // read-only answers while the store generation stands (cache.go)
}

// call sends one request and returns its answer (and the fds with it); a
// monitor msg.Error becomes the matching frontend error.
func (b *backend) call(req msg.Message) (msg.Message, []*os.File, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.mon.Send(req); err != nil {
		return nil, nil, fmt.Errorf("asking the monitor: %w", err)
	}
	ans, fds, err := b.mon.Recv()
	if err != nil {
		return nil, nil, fmt.Errorf("the monitor's answer: %w", err)
	}
	if e, ok := ans.(*msg.Error); ok {
		closeAll(fds)
		return nil, nil, fromMonitorError(e)
	}
	return ans, fds, nil
}

// callFrames sends req and hands each answer frame to each until it says
// no more follow; a monitor Error ends the call.
func (b *backend) callFrames(req msg.Message, each func(msg.Message) (more bool, err error)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.mon.Send(req); err != nil {
		return fmt.Errorf("asking the monitor: %w", err)
	}
	for {
		ans, fds, err := b.mon.Recv()
		closeAll(fds)
		if err != nil {
			return fmt.Errorf("the monitor's answer: %w", err)
		}
		if e, ok := ans.(*msg.Error); ok {
			return fromMonitorError(e)
		}
		more, err := each(ans)
		if err != nil || !more {
			return err
		}
	}
}

// callPaths sends a QueryPaths and gathers every Paths frame of the answer.
func (b *backend) callPaths(q *msg.QueryPaths) ([]string, error) {
	var out []string
	err := b.callFrames(q, func(ans msg.Message) (bool, error) {
		a, ok := ans.(*msg.Paths)
		if !ok {
			return false, fmt.Errorf("monitor answered QueryPaths with %v", ans.Kind())
		}
		for _, p := range a.Paths {
			out = append(out, string(p))
		}
		return a.More, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// errNotValid marks a monitor answer "that path is not valid".
var errNotValid = errors.New("not valid")

func fromMonitorError(e *msg.Error) error {
	switch e.Class {
	case msg.ClassPolicy:
		return &frontend.Error{Msg: e.Message, Status: 1}
	case msg.ClassNotValid:
		return fmt.Errorf("%w: %s", errNotValid, e.Message)
	case msg.ClassUnsupported:
		return frontend.ErrNotImplemented
	default:
		return errors.New(e.Message)
	}
}

// SetOptions hands the client's settings to the monitor, which applies
// nix-daemon's policy and says what to warn the client about.
func (b *backend) SetOptions(ctx context.Context, opts wire.ClientOptions) ([]string, error) {
	m := &msg.SetOptions{MaxJobs: opts.MaxBuildJobs, Cores: opts.BuildCores, KeepGoing: opts.KeepGoing,
		KeepFailed: opts.KeepFailed, Fallback: opts.TryFallback, MaxSilent: opts.MaxSilentTime, Substitute: opts.UseSubstitutes}
	for _, o := range opts.Overrides {
		m.Overrides = append(m.Overrides, msg.Override{Name: o.Key, Value: o.Value})
	}
	ans, _, err := b.call(m)
	if err != nil {
		return nil, err
	}
	w, ok := ans.(*msg.Warnings)
	if !ok {
		return nil, fmt.Errorf("monitor answered SetOptions with %v", ans.Kind())
	}
	return w.Texts, nil
}

func (b *backend) IsValidPath(ctx context.Context, path string) (bool, error) {
	gen, caching := b.current()
	if caching {
		if v, ok := b.cache.lookupValid(gen, path); ok {
			return v, nil
		}
	}
	ans, _, err := b.call(&msg.IsValidPath{Path: msg.StorePath(path)})
	if err != nil {
		return false, err
	}
	r, ok := ans.(*msg.Bool)
	if !ok {
		return false, fmt.Errorf("monitor answered IsValidPath with %v", ans.Kind())
	}
	if caching {
		b.cache.putValid(gen, path, r.V)
	}
	return r.V, nil
}

// maxPathsPerQuery keeps a QueryPaths request inside one frame.
const maxPathsPerQuery = 512

func (b *backend) QueryValidPaths(ctx context.Context, paths []string, substitute bool) ([]string, error) {
	var out []string
	for len(paths) > 0 {
		n := min(len(paths), maxPathsPerQuery)
		got, err := b.callPaths(&msg.QueryPaths{Op: msg.PathsValid, Paths: storePaths(paths[:n]), Substitute: substitute})
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		paths = paths[n:]
	}
	return out, nil
}

func (b *backend) QueryPathInfo(ctx context.Context, path string) (*wire.UnkeyedValidPathInfo, error) {
	gen, caching := b.current()
	if caching {
		if info, ok := b.cache.lookupInfo(gen, path); ok {
			return info, nil
		}
		if paths, closure := b.cache.ahead(path); paths != nil {
			if err := b.fetchInfos(gen, paths, closure); err != nil {
				return nil, err
			}
			if info, ok := b.cache.lookupInfo(gen, path); ok {
				return info, nil
			}
		}
	}
	ans, _, err := b.call(&msg.QueryPathInfo{Path: msg.StorePath(path)})
	if errors.Is(err, errNotValid) {
		if caching {
			b.cache.putInfo(gen, path, nil)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := toWireInfo(ans)
	if err != nil {
		return nil, err
	}
	if caching {
		b.cache.putInfo(gen, path, &info.UnkeyedValidPathInfo)
	}
	return &info.UnkeyedValidPathInfo, nil
}

func (b *backend) QueryReferrers(ctx context.Context, path string) ([]string, error) {
	gen, caching := b.current()
	if caching {
		if rs, ok := b.cache.lookupReferrers(gen, path); ok {
			return rs, nil
		}
		if b.cache.walkingBack(path) {
			if err := b.fetchReferrers(gen, path, prefetch-1); err != nil {
				return nil, err
			}
			if rs, ok := b.cache.lookupReferrers(gen, path); ok {
				return rs, nil
			}
		}
	}
	rs, err := b.callPaths(&msg.QueryPaths{Op: msg.PathsReferrers, Paths: msg.StorePaths{msg.StorePath(path)}})
	if caching && err == nil {
		b.cache.putReferrers(gen, path, rs)
	}
	return rs, err
}

func (b *backend) QueryPathFromHashPart(ctx context.Context, hashPart string) (string, error) {
	ps, err := b.callPaths(&msg.QueryPaths{Op: msg.PathsByHashPart, HashPart: hashPart})
	if err != nil || len(ps) == 0 {
		return "", err
	}
	return ps[0], nil
}

func (b *backend) QueryAllValidPaths(ctx context.Context) ([]string, error) {
	ps, err := b.callPaths(&msg.QueryPaths{Op: msg.PathsAll})
	b.cache.hint(ps)
	return ps, err
}

func (b *backend) QueryValidDerivers(ctx context.Context, path string) ([]string, error) {
	return b.callPaths(&msg.QueryPaths{Op: msg.PathsValidDerivers, Paths: msg.StorePaths{msg.StorePath(path)}})
}

func (b *backend) AddTempRoot(ctx context.Context, path string) error {
	_, _, err := b.call(&msg.AddTempRoot{Path: msg.StorePath(path)})
	return err
}

func (b *backend) AddIndirectRoot(ctx context.Context, symlink string) error {
	_, _, err := b.call(&msg.AddIndirectRoot{Link: symlink})
	return err
}

func (b *backend) SyncWithGC(ctx context.Context) error {
	_, _, err := b.call(&msg.SyncWithGC{})
	return err
}

func (b *backend) AddSignatures(ctx context.Context, path string, sigs []string) error {
	_, _, err := b.call(&msg.AddSignatures{Path: msg.StorePath(path), Sigs: sigs})
	return err
}

func (b *backend) AddTextToStore(ctx context.Context, name, text string, refs []string) (string, error) {
	info, err := b.upload(&msg.BeginUpload{Mode: msg.UploadCA, Name: name, CAMethod: "text", Algo: "sha256",
		References: storePaths(refs), Format: msg.FormatFlat, Size: uint64(len(text))}, strings.NewReader(text))
	return info.Path, err
}

func (b *backend) AddToStore(ctx context.Context, req frontend.AddToStoreRequest, data io.Reader) (wire.ValidPathInfo, error) {
	format := msg.FormatFlat
	if req.Method == "nar" || req.FlatInNAR {
		format = msg.FormatNAR
	}
	return b.upload(&msg.BeginUpload{Mode: msg.UploadCA, Name: req.Name, CAMethod: req.Method, Algo: req.Algo,
		References: storePaths(req.References), Format: format, Repair: req.Repair}, data)
}

func (b *backend) AddToStoreNar(ctx context.Context, req frontend.AddToStoreNarRequest, nar io.Reader) error {
	info, err := toMsgInfo(req.Info)
	if err != nil {
		return err
	}
	_, err = b.upload(&msg.BeginUpload{Mode: msg.UploadNar, Info: info, DontCheckSigs: req.DontCheckSigs,
		Format: msg.FormatNAR, Size: req.Info.NarSize, Repair: req.Repair}, nar)
	return err
}

// upload runs the upload protocol: the monitor hands out a pipe to a fresh
// store worker, the bytes go down it, and the monitor seals and registers.
func (b *backend) upload(begin *msg.BeginUpload, data io.Reader) (wire.ValidPathInfo, error) {
	ans, fds, err := b.call(begin)
	if err != nil {
		return wire.ValidPathInfo{}, err
	}
	ch, ok := ans.(*msg.UploadChannel)
	if !ok || len(fds) != 1 {
		closeAll(fds)
		return wire.ValidPathInfo{}, fmt.Errorf("monitor answered BeginUpload with %v", ans.Kind())
	}
	pipe := fds[0]
	n, copyErr := io.Copy(pipe, data)
	pipe.Close()
	// Always finish, so the monitor ends the worker and cleans the staging
	// directory; a copy error from the client side wins over the answer.
	fin, _, err := b.call(&msg.FinishUpload{ID: ch.ID, Written: uint64(n)})
	if copyErr != nil && !errors.Is(copyErr, os.ErrClosed) {
		var fe *frontend.Error
		if err != nil && errors.As(err, &fe) {
			return wire.ValidPathInfo{}, err
		}
		return wire.ValidPathInfo{}, copyErr
	}
	if err != nil {
		return wire.ValidPathInfo{}, err
	}
	return toWireInfo(fin)
}

// NarFromPath serialises a valid path straight from the store, which this
// process may read (and nothing else): the bytes never pass the monitor.
func (b *backend) NarFromPath(ctx context.Context, path string, w io.Writer) error {
	ok, err := b.IsValidPath(ctx, path)
	if err != nil {
		return err
	}
	if !ok {
		return frontend.Errorf("path '%s' is not valid", path)
	}
	return dumpfs.DumpPath(w, path)
}

func storePaths(ps []string) msg.StorePaths {
	out := make(msg.StorePaths, len(ps))
	for i, p := range ps {
		out[i] = msg.StorePath(p)
	}
	return out
}

// toWireInfo converts the monitor's PathInfo to the worker protocol's form
// (the NAR hash as bare base16, as Nix's daemon sends it).
func toWireInfo(ans msg.Message) (wire.ValidPathInfo, error) {
	pi, ok := ans.(*msg.PathInfo)
	if !ok {
		return wire.ValidPathInfo{}, fmt.Errorf("monitor answered with %v, not PathInfo", ans.Kind())
	}
	h, err := nixhash.Parse(pi.NarHash)
	if err != nil {
		return wire.ValidPathInfo{}, fmt.Errorf("monitor's NAR hash %q: %w", pi.NarHash, err)
	}
	refs := make([]string, len(pi.References))
	for i, r := range pi.References {
		refs[i] = string(r)
	}
	return wire.ValidPathInfo{Path: string(pi.Path), UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{
		Deriver: string(pi.Deriver), NarHash: h.Base16(), References: refs,
		RegistrationTime: uint64(pi.RegistrationTime), NarSize: pi.NarSize,
		Ultimate: pi.Ultimate, Sigs: pi.Sigs, CA: pi.CA,
	}}, nil
}

// toMsgInfo converts a client's claimed path info for the monitor; the NAR
// hash may come bare (base16 or nix32) or with its algorithm.
func toMsgInfo(i wire.ValidPathInfo) (msg.PathInfo, error) {
	h, err := nixhash.Parse(i.NarHash)
	if err != nil {
		if h, err = nixhash.ParseAs(i.NarHash, nixhash.SHA256); err != nil {
			return msg.PathInfo{}, frontend.Errorf("bad NAR hash '%s' for path '%s'", i.NarHash, i.Path)
		}
	}
	return msg.PathInfo{Path: msg.StorePath(i.Path), Deriver: msg.StorePath(i.Deriver), NarHash: h.String(),
		References: storePaths(i.References), NarSize: i.NarSize, Ultimate: i.Ultimate, Sigs: i.Sigs, CA: i.CA}, nil
}

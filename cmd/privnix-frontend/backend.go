package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"privnix/frontend"
	"privnix/frontend/wire"
	"privnix/ipc"
	"privnix/ipc/msg"
)

// backend carries out a connection's operations by asking the monitor. One
// request is in flight at a time: the channel is strictly request/answer.
type backend struct {
	mu       sync.Mutex
	mon      *ipc.Conn
	storeDir string
}

// call sends one request and returns its answer; a monitor msg.Error becomes
// the matching frontend error.
func (b *backend) call(req msg.Message) (msg.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.mon.Send(req); err != nil {
		return nil, fmt.Errorf("asking the monitor: %w", err)
	}
	ans, fds, err := b.mon.Recv()
	closeAll(fds)
	if err != nil {
		return nil, fmt.Errorf("the monitor's answer: %w", err)
	}
	if e, ok := ans.(*msg.Error); ok {
		return nil, fromMonitorError(e)
	}
	return ans, nil
}

func fromMonitorError(e *msg.Error) error {
	switch e.Class {
	case msg.ClassPolicy, msg.ClassNotValid:
		return &frontend.Error{Msg: e.Message, Status: 1}
	case msg.ClassUnsupported:
		return frontend.ErrNotImplemented
	default:
		return errors.New(e.Message)
	}
}

func (b *backend) SetOptions(ctx context.Context, opts wire.ClientOptions) ([]string, error) {
	return nil, nil
}

func (b *backend) IsValidPath(ctx context.Context, path string) (bool, error) {
	ans, err := b.call(&msg.IsValidPath{Path: msg.StorePath(path)})
	if err != nil {
		return false, err
	}
	r, ok := ans.(*msg.Bool)
	if !ok {
		return false, fmt.Errorf("monitor answered IsValidPath with %v", ans.Kind())
	}
	return r.V, nil
}

func (b *backend) QueryValidPaths(ctx context.Context, paths []string, substitute bool) ([]string, error) {
	return nil, frontend.ErrNotImplemented
}

func (b *backend) QueryPathInfo(ctx context.Context, path string) (*wire.UnkeyedValidPathInfo, error) {
	return nil, frontend.ErrNotImplemented
}

func (b *backend) QueryReferrers(ctx context.Context, path string) ([]string, error) {
	return nil, frontend.ErrNotImplemented
}

func (b *backend) QueryPathFromHashPart(ctx context.Context, hashPart string) (string, error) {
	return "", frontend.ErrNotImplemented
}

func (b *backend) QueryAllValidPaths(ctx context.Context) ([]string, error) {
	return nil, frontend.ErrNotImplemented
}

func (b *backend) QueryValidDerivers(ctx context.Context, path string) ([]string, error) {
	return nil, frontend.ErrNotImplemented
}

func (b *backend) QueryDerivationOutputMap(ctx context.Context, drvPath string) (map[string]string, error) {
	return nil, frontend.ErrNotImplemented
}

// No substituters yet: nothing is substitutable, which is a true answer.
func (b *backend) QuerySubstitutablePaths(ctx context.Context, paths []string) ([]string, error) {
	return nil, nil
}

func (b *backend) QuerySubstitutablePathInfos(ctx context.Context, paths map[string]string) (map[string]frontend.SubstitutablePathInfo, error) {
	return map[string]frontend.SubstitutablePathInfo{}, nil
}

func (b *backend) QueryMissing(ctx context.Context, targets []wire.DerivedPath) (frontend.Missing, error) {
	return frontend.Missing{}, frontend.ErrNotImplemented
}

func (b *backend) AddTempRoot(ctx context.Context, path string) error {
	_, err := b.call(&msg.AddTempRoot{Path: msg.StorePath(path)})
	return err
}

func (b *backend) AddIndirectRoot(ctx context.Context, symlink string) error {
	return frontend.ErrNotImplemented
}

func (b *backend) SyncWithGC(ctx context.Context) error { return frontend.ErrNotImplemented }

func (b *backend) AddSignatures(ctx context.Context, path string, sigs []string) error {
	return frontend.ErrNotImplemented
}

func (b *backend) AddTextToStore(ctx context.Context, name, text string, refs []string) (string, error) {
	return "", frontend.ErrNotImplemented
}

func (b *backend) AddToStore(ctx context.Context, req frontend.AddToStoreRequest, data io.Reader) (wire.ValidPathInfo, error) {
	return wire.ValidPathInfo{}, frontend.ErrNotImplemented
}

func (b *backend) AddToStoreNar(ctx context.Context, req frontend.AddToStoreNarRequest, nar io.Reader) error {
	return frontend.ErrNotImplemented
}

func (b *backend) NarFromPath(ctx context.Context, path string, w io.Writer) error {
	return frontend.ErrNotImplemented
}

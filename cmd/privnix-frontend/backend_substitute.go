package main

import (
	"context"
	"fmt"

	"privnix/frontend"
	"privnix/ipc/msg"
)

// QuerySubstitutablePaths asks the monitor which paths the connection's
// substituters have.
func (b *backend) QuerySubstitutablePaths(ctx context.Context, paths []string) ([]string, error) {
	infos, err := b.querySubstitutable(paths, false)
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = string(in.Path)
	}
	return out, err
}

// QuerySubstitutablePathInfos asks the monitor what each path's substitute
// would download. The content addresses the client sends are not needed: a
// cache with another store directory is never used.
func (b *backend) QuerySubstitutablePathInfos(ctx context.Context, paths map[string]string) (map[string]frontend.SubstitutablePathInfo, error) {
	list := make([]string, 0, len(paths))
	for p := range paths {
		list = append(list, p)
	}
	infos, err := b.querySubstitutable(list, true)
	if err != nil {
		return nil, err
	}
	out := make(map[string]frontend.SubstitutablePathInfo, len(infos))
	for _, in := range infos {
		refs := make([]string, len(in.References))
		for i, r := range in.References {
			refs[i] = string(r)
		}
		out[string(in.Path)] = frontend.SubstitutablePathInfo{Deriver: string(in.Deriver), References: refs,
			DownloadSize: in.DownloadSize, NarSize: in.NarSize}
	}
	return out, nil
}

// querySubstitutable sends QuerySubstitutable per MaxStrings paths and
// gathers every frame of the answers.
func (b *backend) querySubstitutable(paths []string, infos bool) ([]msg.SubstInfo, error) {
	var out []msg.SubstInfo
	for len(paths) > 0 {
		n := min(len(paths), msg.MaxStrings)
		got, err := b.querySubstitutableChunk(&msg.QuerySubstitutable{Paths: storePaths(paths[:n]), Infos: infos})
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		paths = paths[n:]
	}
	return out, nil
}

func (b *backend) querySubstitutableChunk(q *msg.QuerySubstitutable) ([]msg.SubstInfo, error) {
	var out []msg.SubstInfo
	err := b.callFrames(q, func(ans msg.Message) (bool, error) {
		a, ok := ans.(*msg.Substitutable)
		if !ok {
			return false, fmt.Errorf("monitor answered QuerySubstitutable with %v", ans.Kind())
		}
		out = append(out, a.Infos...)
		return a.More, nil
	})
	return out, err
}

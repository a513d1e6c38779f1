package main

import (
	"context"
	"fmt"

	"privnix/frontend"
	"privnix/frontend/wire"
	"privnix/ipc/msg"
)

// A CollectGarbage request carries at most maxGCPathsPerRequest paths and
// maxGCPathBytes bytes of them, inside one frame; a longer `nix-store
// --delete` list is served by several collections.
const (
	maxGCPathsPerRequest = 512
	maxGCPathBytes       = msg.MaxBody / 2
)

// gcChunk is how many of paths the next request takes (at least one).
func gcChunk(paths []string) int {
	n, size := 0, 0
	for n < len(paths) && n < maxGCPathsPerRequest {
		size += len(paths[n]) + 8
		if n > 0 && size > maxGCPathBytes {
			break
		}
		n++
	}
	return n
}

// CollectGarbage asks the monitor to collect, and shows the client what
// nix-daemon logs meanwhile ("finding garbage collector roots...", one
// "deleting '…'" line per deleted path).
func (b *backend) CollectGarbage(ctx context.Context, req frontend.GCRequest) (frontend.GCResult, error) {
	log := frontend.LoggerFrom(ctx)
	log.Log(wire.LvlInfo, "finding garbage collector roots...")
	deleting := req.Action == msg.GCDeleteDead || req.Action == msg.GCDeleteSpecific
	switch {
	case req.Action == msg.GCDeleteSpecific || req.MaxFreed == 0:
	case deleting:
		log.Log(wire.LvlInfo, "deleting garbage...")
	default:
		log.Log(wire.LvlInfo, "determining live/dead paths...")
	}
	var res frontend.GCResult
	var saved int64
	paths := req.Paths
	for first := true; first || len(paths) > 0; first = false {
		n := gcChunk(paths)
		maxFreed := req.MaxFreed
		if deleting && !first {
			if res.BytesFreed > maxFreed {
				break // the limit was reached by an earlier part
			}
			maxFreed -= res.BytesFreed
		}
		got, freed, linksSaved, err := b.collect(&msg.CollectGarbage{Action: req.Action, Paths: storePaths(paths[:n]),
			IgnoreLiveness: req.IgnoreLiveness, MaxFreed: maxFreed})
		if deleting {
			for _, p := range got {
				log.Log(wire.LvlInfo, fmt.Sprintf("deleting '%s'", p))
			}
		}
		res.Paths = append(res.Paths, got...)
		res.BytesFreed += freed
		saved = linksSaved
		if err != nil {
			return res, err
		}
		paths = paths[n:]
	}
	if req.Action == msg.GCDeleteDead && res.BytesFreed > req.MaxFreed {
		log.Log(wire.LvlInfo, fmt.Sprintf("deleted more than %d bytes; stopping", req.MaxFreed))
	}
	if deleting {
		log.Log(wire.LvlInfo, "deleting unused links...")
		log.Log(wire.LvlInfo, fmt.Sprintf("note: currently hard linking saves %.2f MiB", float64(saved)/(1024*1024)))
	}
	return res, nil
}

// collect sends one CollectGarbage and gathers every GCResult frame: the
// paths, the bytes freed and what .links saves.
func (b *backend) collect(req *msg.CollectGarbage) ([]string, uint64, int64, error) {
	var out []string
	var last *msg.GCResult
	err := b.callFrames(req, func(ans msg.Message) (bool, error) {
		a, ok := ans.(*msg.GCResult)
		if !ok {
			return false, fmt.Errorf("monitor answered CollectGarbage with %v", ans.Kind())
		}
		for _, p := range a.Paths {
			out = append(out, string(p))
		}
		last = a
		return a.More, nil
	})
	if err != nil {
		return out, 0, 0, err
	}
	return out, last.BytesFreed, last.LinksSaved, nil
}

// FindRoots asks the monitor for the roots; it censors them for untrusted
// clients itself.
func (b *backend) FindRoots(ctx context.Context) ([]frontend.GCRoot, error) {
	var out []frontend.GCRoot
	err := b.callFrames(&msg.FindRoots{}, func(ans msg.Message) (bool, error) {
		a, ok := ans.(*msg.Roots)
		if !ok {
			return false, fmt.Errorf("monitor answered FindRoots with %v", ans.Kind())
		}
		for _, r := range a.Roots {
			out = append(out, frontend.GCRoot{Link: r.Link, Path: string(r.Path)})
		}
		return a.More, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

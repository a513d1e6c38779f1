package monitor

import (
	"os"

	"privnix/ipc/msg"
	"privnix/nix/conf"
	"privnix/nix/storepath"
)

// Store optimisation (worker op 34), as Nix 2.8's optimiseStore (§6.13):
// every valid path's regular files and symlinks are hard-linked through
// <store>/.links (storefs.Linker), with the GC lock held so that no path
// goes away meanwhile. Any allowed user may ask, as with nix-daemon.
func handleOptimiseStore(s *session, _ msg.Message, _ []*os.File) (reply, error) {
	s.m.roots.collecting.Lock()
	defer s.m.roots.collecting.Unlock()
	all, err := gcDB{s.m.store}.AllValid()
	if err != nil {
		return s.failed("optimising the store", err), nil
	}
	l, err := s.m.store.files().NewLinker()
	if err != nil {
		return s.failed("optimising the store", err), nil
	}
	defer l.Close()
	if err := l.LoadInodes(); err != nil {
		return s.failed("optimising the store", err), nil
	}
	for _, p := range all {
		if err := l.Optimise(p.Base()); err != nil {
			return s.failed("optimising the store", err), nil
		}
	}
	s.log.Info("store optimised", "paths", len(all), "files_linked", l.Stats.FilesLinked, "bytes_freed", l.Stats.BytesFreed)
	return answer(&msg.Optimised{FilesLinked: l.Stats.FilesLinked, BytesFreed: l.Stats.BytesFreed}), nil
}

// autoOptimise links the files of paths just registered through .links when
// nix.conf sets auto-optimise-store, as Nix does for every path it
// registers. The caller holds temporary roots on them. A failure is logged:
// the paths are valid and complete either way.
func (m *Monitor) autoOptimise(set *conf.Settings, ps ...storepath.Path) {
	if set.Other["auto-optimise-store"] != "true" || len(ps) == 0 {
		return
	}
	l, err := m.store.files().NewLinker()
	if err != nil {
		m.log.Warn("auto-optimise-store", "err", err)
		return
	}
	defer l.Close()
	for _, p := range ps {
		if err := l.Optimise(p.Base()); err != nil {
			m.log.Warn("auto-optimise-store", "path", m.store.dir.String(p), "err", err)
		}
	}
}

package monitor

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"privnix/internal/narfs/dumpfs"
	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/monitor/storefs"
	"privnix/nix/storepath"
)

// Repair (nix-build --repair; trusted users only, see handleBuild and
// handleBeginUpload), as Nix 2.8: a derivation's valid outputs are checked
// (their NAR hash against the database); a corrupted or missing one is
// rebuilt and replaces the store object. If they are all good, the rest of
// their closure is checked, and the derivations that produced a bad path
// are repaired the same way.

// contentsGood is Nix's pathContentsGood: p is valid, exists and has its
// registered NAR hash. The client sees the check, and a bad path.
// A path is checked once per request (Nix's pathContentsGoodCache).
func (r *buildRequest) contentsGood(about, p storepath.Path) (bool, error) {
	r.mu.Lock()
	good, known := r.checked[p]
	r.mu.Unlock()
	if known {
		return good, nil
	}
	m := r.s.m
	shown := m.store.dir.String(p)
	r.event(msg.EventInfo, about, fmt.Sprintf("checking path '%s'...", shown))
	var info storedb.PathInfo
	var valid bool
	if err := m.store.with(func(db *storedb.DB) (e error) { info, valid, e = db.PathInfo(p); return }); err != nil {
		return false, err
	}
	good = valid && m.storeNarHashIs(p, info.NarHash.Digest)
	r.mu.Lock()
	r.checked[p] = good
	r.mu.Unlock()
	if !good {
		r.event(msg.EventPlainError, about, fmt.Sprintf("path '%s' is corrupted or missing!", shown))
	}
	return good, nil
}

// storeNarHashIs reports whether p's tree in the store dumps to a NAR
// with this SHA-256 (false if it cannot be read).
func (m *Monitor) storeNarHashIs(p storepath.Path, digest []byte) bool {
	dfd, err := unix.Open(string(m.store.dir), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(dfd)
	h := sha256.New()
	return dumpfs.Dump(h, dfd, p.Base()) == nil && bytes.Equal(h.Sum(nil), digest)
}

// corruptOutputs checks v's valid outputs (in output name order) and
// returns the bad ones; missing lists those not valid.
func (r *buildRequest) corruptOutputs(v *verifiedDrv, missing []storepath.Path) ([]storepath.Path, error) {
	var bad []storepath.Path
	for _, o := range v.d.Outputs {
		p := v.outputs[o.Name]
		if slices.Contains(missing, p) {
			continue
		}
		good, err := r.contentsGood(v.path, p)
		if err != nil {
			return nil, err
		}
		if !good {
			bad = append(bad, p)
		}
	}
	return bad, nil
}

// repairClosure is Nix's repairClosure, once v's own outputs are good:
// every other path of their closure is checked; a bad one is repaired by
// repairing the derivation among v's inputs that produced it. o is final.
func (r *buildRequest) repairClosure(v *verifiedDrv, depth int, o *outcome) {
	m := r.s.m
	var own []storepath.Path
	for _, p := range v.outputs {
		own = append(own, p)
	}
	closure, err := m.closure(own)
	if err != nil {
		o.status, o.msg = statusMiscFailure, "repairing failed in privnixd: "+err.Error()
		return
	}
	producers := r.inputProducers(v)
	failed := false
	for _, p := range closure { // sorted by base name, as Nix's StorePathSet
		if slices.Contains(own, p) {
			continue
		}
		good, err := r.contentsGood(v.path, p)
		if err != nil {
			o.status, o.msg = statusMiscFailure, "repairing failed in privnixd: "+err.Error()
			return
		}
		if good {
			continue
		}
		r.event(msg.EventPlainError, v.path, fmt.Sprintf("found corrupted or missing path '%s' in the output closure of '%s'",
			m.store.dir.String(p), m.store.dir.String(v.path)))
		iv := producers[p]
		if iv == nil || !r.realise(iv, depth+1).ok() {
			failed = true
		}
	}
	if failed {
		o.status = statusMiscFailure
		o.msg = fmt.Sprintf("some paths in the output closure of derivation '%s' could not be repaired", yellow(m.store.dir.String(v.path)))
		return
	}
	o.status = statusAlreadyValid
}

// inputProducers maps each output of v's input derivations (transitively)
// to its derivation.
func (r *buildRequest) inputProducers(v *verifiedDrv) map[storepath.Path]*verifiedDrv {
	out := map[storepath.Path]*verifiedDrv{}
	seen := map[storepath.Path]bool{}
	todo := []*verifiedDrv{v}
	for len(todo) > 0 {
		d := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, in := range d.d.InputDrvs {
			ip, _ := r.s.m.store.dir.Parse(in.Path)
			if seen[ip] {
				continue
			}
			seen[ip] = true
			iv, err := r.s.m.verifyDrv(ip)
			if err != nil {
				continue // its outputs are then repaired by no one
			}
			for _, p := range iv.outputs {
				out[p] = iv
			}
			todo = append(todo, iv)
		}
	}
	return out
}

// repairReady is outputsReady in repair mode: missing or corrupted outputs
// are built; if all are good, their closure is repaired (o is then final).
func (r *buildRequest) repairReady(v *verifiedDrv, missing []storepath.Path, depth int, o *outcome) bool {
	bad, err := r.corruptOutputs(v, missing)
	if err != nil {
		o.status, o.msg = statusMiscFailure, "repairing failed in privnixd: "+err.Error()
		return true
	}
	if len(missing)+len(bad) > 0 {
		return false
	}
	r.repairClosure(v, depth, o)
	return true
}

// replaceValid puts a repaired copy of a valid path in place (Nix's
// replaceValidPath): under the path's lock, the old tree goes and the
// sealed copy is renamed in; the path stays registered, with info.
func replaceValid(files *storefs.Store, stage *storefs.Staging, db *storedb.DB, info storedb.PathInfo) error {
	base := info.Path.Base()
	if ok, err := files.Exists(base); err != nil {
		return err
	} else if ok {
		if err := files.Delete(base); err != nil {
			return err
		}
	}
	if err := stage.Commit(base); err != nil {
		return err
	}
	return db.RegisterValid([]storedb.PathInfo{info}, nil)
}

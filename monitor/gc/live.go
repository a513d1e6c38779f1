package gc

import (
	"fmt"
	"slices"
	"strings"

	"privnix/monitor/storedb"
	"privnix/nix/storepath"
)

// ReadDB is what liveness needs from the store database (*storedb.DB has it).
type ReadDB interface {
	PathInfo(p storepath.Path) (storedb.PathInfo, bool, error)
	Referrers(p storepath.Path) ([]storepath.Path, error)
	ValidDerivers(p storepath.Path) ([]storepath.Path, error)
	DerivationOutputs(drv storepath.Path) (map[string]storepath.Path, error)
	AllValid() ([]storepath.Path, error)
}

// Keep holds the keep-outputs and keep-derivations settings (nix.conf; Nix's
// defaults are false and true).
type Keep struct {
	Outputs     bool // a live .drv keeps its valid outputs
	Derivations bool // a live output keeps its valid deriver
}

// forward lists the paths p keeps alive: its references and, per keep, its
// deriver or its outputs. info is p's (valid) info. The keep-derivations edge
// O → D exists only when D is valid and records O as one of its outputs, so
// that it mirrors reverse's D → O exactly.
func forward(db ReadDB, info storedb.PathInfo, keep Keep) ([]storepath.Path, error) {
	next := slices.Clone(info.References)
	if keep.Derivations && !info.Deriver.IsZero() {
		outs, err := db.DerivationOutputs(info.Deriver)
		if err != nil {
			return nil, err
		}
		for _, o := range outs {
			if o == info.Path {
				next = append(next, info.Deriver) // outputs are recorded only for valid drvs
				break
			}
		}
	}
	if keep.Outputs && info.Path.IsDerivation() {
		outs, err := db.DerivationOutputs(info.Path)
		if err != nil {
			return nil, err
		}
		next = append(next, sortedOutputs(outs)...)
	}
	return next, nil
}

// reverse lists the valid paths that keep p alive (the edges of forward,
// reversed): p's referrers other than p; with keep-derivations and p a .drv,
// its recorded outputs whose deriver is p; with keep-outputs, p's valid
// derivers. This is the walk of Nix's deleteReferrersClosure.
func reverse(db ReadDB, p storepath.Path, keep Keep) ([]storepath.Path, error) {
	refs, err := db.Referrers(p)
	if err != nil {
		return nil, err
	}
	prev := slices.DeleteFunc(refs, func(r storepath.Path) bool { return r == p })
	if keep.Derivations && p.IsDerivation() {
		outs, err := db.DerivationOutputs(p)
		if err != nil {
			return nil, err
		}
		for _, o := range sortedOutputs(outs) {
			info, ok, err := db.PathInfo(o)
			if err != nil {
				return nil, err
			}
			if ok && info.Deriver == p && o != p {
				prev = append(prev, o)
			}
		}
	}
	if keep.Outputs {
		ds, err := db.ValidDerivers(p)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if d != p {
				prev = append(prev, d)
			}
		}
	}
	return prev, nil
}

func sortedOutputs(outs map[string]storepath.Path) []storepath.Path {
	ps := make([]storepath.Path, 0, len(outs))
	for _, o := range outs {
		ps = append(ps, o)
	}
	slices.SortFunc(ps, comparePaths)
	return slices.Compact(ps)
}

func comparePaths(a, b storepath.Path) int { return strings.Compare(a.Base(), b.Base()) }

// Live returns the valid paths reachable from roots under the edges of
// Nix's collector (§6.7): references, plus deriver (keep.Derivations) and
// outputs (keep.Outputs). Roots that are not valid are ignored.
func Live(roots []storepath.Path, db ReadDB, keep Keep) (map[storepath.Path]bool, error) {
	live := map[storepath.Path]bool{}
	todo := slices.Clone(roots)
	seen := map[storepath.Path]bool{}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if p.IsZero() || seen[p] {
			continue
		}
		seen[p] = true
		info, ok, err := db.PathInfo(p)
		if err != nil {
			return nil, fmt.Errorf("gc: liveness: %w", err)
		}
		if !ok {
			continue
		}
		live[p] = true
		next, err := forward(db, info, keep)
		if err != nil {
			return nil, fmt.Errorf("gc: liveness: %w", err)
		}
		for _, n := range next {
			if !seen[n] {
				todo = append(todo, n)
			}
		}
	}
	return live, nil
}

// DeadPath is a dead path with the size it frees (its NarSize).
type DeadPath struct {
	Path    storepath.Path
	NarSize uint64
}

// Dead returns every valid path not in live, in deletion order: a path comes
// after every dead path that refers to it and, per keep, after every dead path
// that would keep it alive (an output before its deriver with
// keep-derivations, a deriver before its outputs with keep-outputs; with both
// flags such a pair is a cycle and the order between them is arbitrary).
// Ties are broken by base name, so the order is deterministic.
func Dead(live map[storepath.Path]bool, db ReadDB, keep Keep) ([]DeadPath, error) {
	all, err := db.AllValid()
	if err != nil {
		return nil, fmt.Errorf("gc: listing valid paths: %w", err)
	}
	var dead []storepath.Path
	for _, p := range all {
		if !live[p] {
			dead = append(dead, p)
		}
	}
	return orderDead(dead, db, keep)
}

// orderDead orders ps (a set closed under reverse, as the complement of a
// live set is) so that each path follows the paths of ps that keep it alive:
// a depth-first post-order over reverse edges, edges back into the current
// stack (keep-* cycles) ignored.
func orderDead(ps []storepath.Path, db ReadDB, keep Keep) ([]DeadPath, error) {
	in := make(map[storepath.Path]bool, len(ps))
	for _, p := range ps {
		in[p] = true
	}
	const (
		unseen = iota
		onStack
		done
	)
	state := make(map[storepath.Path]int, len(ps))
	out := make([]DeadPath, 0, len(ps))
	type frame struct {
		p    storepath.Path
		prev []storepath.Path
		i    int
	}
	sorted := slices.Clone(ps)
	slices.SortFunc(sorted, comparePaths)
	for _, start := range sorted {
		if state[start] != unseen {
			continue
		}
		prev, err := reverse(db, start, keep)
		if err != nil {
			return nil, fmt.Errorf("gc: ordering dead paths: %w", err)
		}
		stack := []frame{{p: start, prev: prev}}
		state[start] = onStack
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.i < len(f.prev) {
				q := f.prev[f.i]
				f.i++
				if !in[q] || state[q] != unseen {
					continue
				}
				qprev, err := reverse(db, q, keep)
				if err != nil {
					return nil, fmt.Errorf("gc: ordering dead paths: %w", err)
				}
				state[q] = onStack
				stack = append(stack, frame{p: q, prev: qprev})
				continue
			}
			info, ok, err := db.PathInfo(f.p)
			if err != nil {
				return nil, fmt.Errorf("gc: ordering dead paths: %w", err)
			}
			state[f.p] = done
			if ok {
				out = append(out, DeadPath{Path: f.p, NarSize: info.NarSize})
			}
			stack = stack[:len(stack)-1]
		}
	}
	return out, nil
}

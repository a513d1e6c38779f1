package storedb

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"privnix/nix/storepath"
)

// maxConflictRetries bounds how often a write transaction that lost an
// optimistic-concurrency race (badger.ErrConflict) is retried.
const maxConflictRetries = 16

// tx is a write transaction that counts what it stages, so that chunked can
// commit before Badger's per-transaction cap (ErrTxnTooBig).
type tx struct {
	txn         *badger.Txn
	size, count int64
}

func (t *tx) set(key, val []byte) error {
	t.size += int64(len(key)+len(val)) + 10 // + meta bytes and the commit timestamp
	t.count++
	return t.txn.Set(key, val)
}

func (t *tx) del(key []byte) error {
	t.size += int64(len(key)) + 10
	t.count++
	return t.txn.Delete(key)
}

// errStepTooBig marks a single step that alone exceeds a transaction; it is not
// retried with a smaller budget.
var errStepTooBig = errors.New("the writes for one path exceed a database transaction")

// chunked runs step(t, i) for i = 0…n-1 in order, over as few transactions as
// fit, each one durable (SyncWrites) when it commits. A step's writes never
// straddle two transactions, so every committed prefix is steps 0…k-1, whole.
// A transaction that hits Badger's cap anyway is discarded and its steps redone
// with half the budget; one that loses a conflict is redone as it was.
func (db *DB) chunked(n int, step func(t *tx, i int) error) error {
	size, count := db.bdb.MaxBatchSize()/2, db.bdb.MaxBatchCount()/2
	retries := 0
	for start := 0; start < n; {
		end, err := db.commitChunk(start, n, size, count, step)
		switch {
		case errors.Is(err, badger.ErrTxnTooBig):
			size, count = size/2, count/2
		case errors.Is(err, badger.ErrConflict) && retries < maxConflictRetries:
			retries++
		case err != nil:
			return err
		default:
			start = end
		}
	}
	return nil
}

// commitChunk stages steps from start on until the budget is used, commits
// them, and returns the index after the last committed step.
func (db *DB) commitChunk(start, n int, size, count int64, step func(t *tx, i int) error) (int, error) {
	t := &tx{txn: db.bdb.NewTransaction(true)}
	defer t.txn.Discard()
	i := start
	for ; i < n && (i == start || t.size < size && t.count < count); i++ {
		err := step(t, i)
		if errors.Is(err, badger.ErrTxnTooBig) && i == start {
			return start, fmt.Errorf("%w (step %d: %v)", errStepTooBig, i, err)
		}
		if err != nil {
			return start, err
		}
	}
	if err := t.txn.Commit(); err != nil {
		return start, err
	}
	db.commits.Add(1)
	return i, nil
}

// MarkPending records each path as pending, durably, before the sealer renames
// its tree into the store (DESIGN.md "Sealing" step 5).
func (db *DB) MarkPending(ps ...storepath.Path) error {
	if err := checkPaths(ps); err != nil {
		return fmt.Errorf("storedb: mark pending: %w", err)
	}
	err := db.chunked(len(ps), func(t *tx, i int) error { return t.set(pendingKey(ps[i]), nil) })
	if err != nil {
		return fmt.Errorf("storedb: mark pending: %w", err)
	}
	return nil
}

// ClearPending drops the pending marks of ps (after start-up cleanup removed
// their trees, or after a seal failed and its tree was removed).
func (db *DB) ClearPending(ps ...storepath.Path) error {
	if err := checkPaths(ps); err != nil {
		return fmt.Errorf("storedb: clear pending: %w", err)
	}
	err := db.chunked(len(ps), func(t *tx, i int) error { return t.del(pendingKey(ps[i])) })
	if err != nil {
		return fmt.Errorf("storedb: clear pending: %w", err)
	}
	return nil
}

func checkPaths(ps []storepath.Path) error {
	for _, p := range ps {
		if p.IsZero() {
			return fmt.Errorf("%w: zero store path", ErrBadInfo)
		}
	}
	return nil
}

// RegisterValid makes the paths of infos valid: for each path P it writes P's
// info, a referrer entry R ← P for each reference R, the derivation outputs
// drvOutputs[P] if any, and drops "pending P" — all in one transaction, durable
// before RegisterValid returns. A path already valid is updated (Nix's
// re-registration); RegistrationTime 0 means now.
//
// Every reference must be valid already or be in infos; otherwise nothing is
// written and the error (ErrMissingReference) names the reference. References
// within infos must not form a cycle other than self-references (ErrCycle).
// drvOutputs may only name derivations that are in infos.
//
// A large batch does not fit in one Badger transaction. RegisterValid then
// commits it in several, in dependency order (references before referrers), so
// every committed prefix is closed under references: a crash part-way leaves
// some of the batch valid, each with its whole closure, and the rest pending.
func (db *DB) RegisterValid(infos []PathInfo, drvOutputs map[storepath.Path]map[string]storepath.Path) error {
	batch, err := prepareBatch(infos, drvOutputs)
	if err != nil {
		return fmt.Errorf("storedb: register: %w", err)
	}
	order, err := topoOrder(batch, func(i int) []storepath.Path { return batch[i].References })
	if err != nil {
		return fmt.Errorf("storedb: register: %w", err)
	}
	db.gcMu.RLock()
	defer db.gcMu.RUnlock()
	if err := db.checkExternalRefs(batch); err != nil {
		return fmt.Errorf("storedb: register: %w", err)
	}
	now := time.Now().Unix()
	err = db.chunked(len(order), func(t *tx, i int) error {
		info := &batch[order[i]]
		if info.RegistrationTime == 0 {
			info.RegistrationTime = now
		}
		return db.registerOne(t, info, drvOutputs[info.Path])
	})
	if err != nil {
		return fmt.Errorf("storedb: register: %w", err)
	}
	return nil
}

// prepareBatch validates infos and returns a copy with references sorted and
// deduplicated.
func prepareBatch(infos []PathInfo, drvOutputs map[storepath.Path]map[string]storepath.Path) ([]PathInfo, error) {
	batch := slices.Clone(infos)
	seen := make(map[storepath.Path]bool, len(batch))
	for i := range batch {
		info := &batch[i]
		if err := checkInfo(info); err != nil {
			return nil, err
		}
		if seen[info.Path] {
			return nil, fmt.Errorf("%w: %s appears twice in one batch", ErrBadInfo, info.Path.Base())
		}
		seen[info.Path] = true
		info.References = slices.Clone(info.References)
		slices.SortFunc(info.References, comparePaths)
		info.References = slices.Compact(info.References)
	}
	for drv, outs := range drvOutputs {
		if !seen[drv] {
			return nil, fmt.Errorf("%w: derivation outputs given for %s, which is not in the batch", ErrBadInfo, drv.Base())
		}
		if err := checkOutputs(outs); err != nil {
			return nil, fmt.Errorf("outputs of %s: %w", drv.Base(), err)
		}
	}
	return batch, nil
}

func comparePaths(a, b storepath.Path) int { return strings.Compare(a.Base(), b.Base()) }

func checkInfo(info *PathInfo) error {
	switch {
	case info.Path.IsZero():
		return fmt.Errorf("%w: zero store path", ErrBadInfo)
	case !info.NarHash.Algo.Valid() || len(info.NarHash.Digest) != info.NarHash.Algo.Size():
		return fmt.Errorf("%w: %s: NAR hash is not a complete hash", ErrBadInfo, info.Path.Base())
	case len(info.CA) > maxStringLen:
		return fmt.Errorf("%w: %s: CA string of %d bytes", ErrBadInfo, info.Path.Base(), len(info.CA))
	case len(info.Sigs) > maxListLen || len(info.References) > maxListLen:
		return fmt.Errorf("%w: %s: too many signatures or references", ErrBadInfo, info.Path.Base())
	}
	if slices.ContainsFunc(info.References, storepath.Path.IsZero) {
		return fmt.Errorf("%w: %s: zero reference", ErrBadInfo, info.Path.Base())
	}
	for _, s := range info.Sigs {
		if s == "" || len(s) > maxStringLen {
			return fmt.Errorf("%w: %s: signature of %d bytes", ErrBadInfo, info.Path.Base(), len(s))
		}
	}
	return nil
}

func checkOutputs(outs map[string]storepath.Path) error {
	for name, out := range outs {
		if name == "" || strings.ContainsRune(name, '/') || len(name) > storepath.MaxNameLen {
			return fmt.Errorf("%w: output name %q", ErrBadInfo, name)
		}
		if out.IsZero() {
			return fmt.Errorf("%w: output %q has a zero path", ErrBadInfo, name)
		}
	}
	return nil
}

// topoOrder orders the indexes of batch so that every path comes after the
// paths of the batch it refers to. Self-references are ignored; any other
// cycle is an error naming a path on it.
func topoOrder(batch []PathInfo, refs func(i int) []storepath.Path) ([]int, error) {
	index := make(map[storepath.Path]int, len(batch))
	for i := range batch {
		index[batch[i].Path] = i
	}
	const (
		unseen = iota
		onStack
		done
	)
	state := make([]uint8, len(batch))
	order := make([]int, 0, len(batch))
	var visit func(i int) error
	visit = func(i int) error {
		state[i] = onStack
		for _, r := range refs(i) {
			j, ok := index[r]
			if !ok || j == i || state[j] == done {
				continue
			}
			if state[j] == onStack {
				return fmt.Errorf("%w of %s", ErrCycle, batch[i].Path.Base())
			}
			if err := visit(j); err != nil {
				return err
			}
		}
		state[i] = done
		order = append(order, i)
		return nil
	}
	for i := range batch {
		if state[i] == unseen {
			if err := visit(i); err != nil {
				return nil, err
			}
		}
	}
	return order, nil
}

// checkExternalRefs refuses the batch if a reference outside it is not valid.
// The caller holds gcMu for reading, so no valid path disappears before the
// batch commits.
func (db *DB) checkExternalRefs(batch []PathInfo) error {
	inBatch := make(map[storepath.Path]bool, len(batch))
	for _, info := range batch {
		inBatch[info.Path] = true
	}
	return db.bdb.View(func(txn *badger.Txn) error {
		for _, info := range batch {
			for _, r := range info.References {
				if inBatch[r] {
					continue
				}
				ok, err := exists(txn, validKey(r))
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("%w: %s (referenced by %s)", ErrMissingReference, db.show(r), db.show(info.Path))
				}
			}
		}
		return nil
	})
}

// registerOne stages the writes that make info.Path valid.
func (db *DB) registerOne(t *tx, info *PathInfo, outs map[string]storepath.Path) error {
	old, wasValid, err := readInfo(t.txn, info.Path)
	if err != nil {
		return err
	}
	if err := t.set(validKey(info.Path), encodeInfo(info)); err != nil {
		return err
	}
	for _, r := range info.References {
		if !wasValid || !slices.Contains(old.References, r) {
			if err := t.set(referrerKey(r, info.Path), nil); err != nil {
				return err
			}
		}
	}
	for _, r := range old.References {
		if !slices.Contains(info.References, r) {
			if err := t.del(referrerKey(r, info.Path)); err != nil {
				return err
			}
		}
	}
	if err := t.del(pendingKey(info.Path)); err != nil {
		return err
	}
	return setDrvOutputs(t, info.Path, outs)
}

// setDrvOutputs records drv's outputs, replacing an output recorded before
// under the same name (Nix's "insert or replace").
func setDrvOutputs(t *tx, drv storepath.Path, outs map[string]storepath.Path) error {
	names := slices.Sorted(mapKeys(outs))
	for _, name := range names {
		out := outs[name]
		old, err := getValue(t.txn, drvOutKey(drv, name))
		if err != nil {
			return err
		}
		if old != nil && string(old) != out.Base() {
			oldOut, err := parseBaseField("output of "+drv.Base(), string(old))
			if err != nil {
				return err
			}
			if err := t.del(deriverKey(oldOut, drv)); err != nil {
				return err
			}
		}
		if err := t.set(drvOutKey(drv, name), []byte(out.Base())); err != nil {
			return err
		}
		if err := t.set(deriverKey(out, drv), nil); err != nil {
			return err
		}
	}
	return nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// SetDerivationOutputs records outputs of the valid derivation drv, replacing
// outputs recorded before under the same names and keeping the others.
func (db *DB) SetDerivationOutputs(drv storepath.Path, outs map[string]storepath.Path) error {
	if err := checkOutputs(outs); err != nil {
		return fmt.Errorf("storedb: set outputs of %s: %w", drv.Base(), err)
	}
	db.gcMu.RLock()
	defer db.gcMu.RUnlock()
	err := db.chunked(1, func(t *tx, _ int) error {
		ok, err := exists(t.txn, validKey(drv))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %s", ErrNotValid, db.show(drv))
		}
		return setDrvOutputs(t, drv, outs)
	})
	if err != nil {
		return fmt.Errorf("storedb: set outputs of %s: %w", drv.Base(), err)
	}
	return nil
}

// AddSignatures appends to p's signatures those of sigs it lacks, keeping the
// existing order, then sigs' order.
func (db *DB) AddSignatures(p storepath.Path, sigs []string) error {
	for _, s := range sigs {
		if s == "" || len(s) > maxStringLen {
			return fmt.Errorf("storedb: add signatures to %s: %w: signature of %d bytes", p.Base(), ErrBadInfo, len(s))
		}
	}
	err := db.chunked(1, func(t *tx, _ int) error {
		info, ok, err := readInfo(t.txn, p)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %s", ErrNotValid, db.show(p))
		}
		n := len(info.Sigs)
		for _, s := range sigs {
			if !slices.Contains(info.Sigs, s) {
				info.Sigs = append(info.Sigs, s)
			}
		}
		if len(info.Sigs) == n {
			return nil
		}
		return t.set(validKey(p), encodeInfo(&info))
	})
	if err != nil {
		return fmt.Errorf("storedb: add signatures to %s: %w", p.Base(), err)
	}
	return nil
}

// Delete makes the paths of ps invalid (for the garbage collector): it removes
// each one's info, the referrer entries it contributed, and its derivation
// outputs. Paths of ps that are not valid are ignored. It refuses
// (ErrLiveReferrer, nothing deleted) if a valid path outside ps refers to one
// of ps. Registration waits while Delete runs. A large set is committed in
// several transactions, referrers before their references, so every committed
// prefix leaves the valid set closed under references.
func (db *DB) Delete(ps ...storepath.Path) error { return db.delete(ps, false) }

// DeleteMarkPending is Delete that also marks each path it makes invalid as
// pending, in the same transactions: the garbage collector then removes the
// files, and a crash before it is done leaves only pending, invalid paths,
// which start-up removes.
func (db *DB) DeleteMarkPending(ps ...storepath.Path) error { return db.delete(ps, true) }

func (db *DB) delete(ps []storepath.Path, markPending bool) error {
	if err := checkPaths(ps); err != nil {
		return fmt.Errorf("storedb: delete: %w", err)
	}
	db.gcMu.Lock()
	defer db.gcMu.Unlock()
	victims, outs, err := db.deletable(ps)
	if err != nil {
		return fmt.Errorf("storedb: delete: %w", err)
	}
	order, err := topoOrder(victims, func(i int) []storepath.Path { return victims[i].References })
	if err != nil {
		return fmt.Errorf("storedb: delete: %w", err)
	}
	slices.Reverse(order)
	err = db.chunked(len(order), func(t *tx, i int) error {
		if markPending {
			if err := t.set(pendingKey(victims[order[i]].Path), nil); err != nil {
				return err
			}
		}
		return deleteOne(t, &victims[order[i]], outs[victims[order[i]].Path])
	})
	if err != nil {
		return fmt.Errorf("storedb: delete: %w", err)
	}
	return nil
}

// deletable reads the infos and derivation outputs of the valid paths of ps
// and checks that none has a referrer outside ps. The caller holds gcMu for
// writing. (The outputs are read here, not in the write transaction: a
// Badger iterator over a write transaction sorts all its pending writes.)
func (db *DB) deletable(ps []storepath.Path) ([]PathInfo, map[storepath.Path]map[string]storepath.Path, error) {
	set := make(map[storepath.Path]bool, len(ps))
	for _, p := range ps {
		set[p] = true
	}
	var victims []PathInfo
	outs := map[storepath.Path]map[string]storepath.Path{}
	err := db.bdb.View(func(txn *badger.Txn) error {
		for p := range set {
			info, ok, err := readInfo(txn, p)
			if err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
			referrers, err := scanSecond(txn, referrerPrefix(p), prefixReferrer)
			if err != nil {
				return err
			}
			for _, q := range referrers {
				if !set[q] {
					return fmt.Errorf("%w: %s is referenced by %s", ErrLiveReferrer, db.show(p), db.show(q))
				}
			}
			if outs[p], err = readDrvOutputs(txn, p); err != nil {
				return err
			}
			victims = append(victims, info)
		}
		return nil
	})
	slices.SortFunc(victims, func(a, b PathInfo) int { return comparePaths(a.Path, b.Path) })
	return victims, outs, err
}

// deleteOne stages the writes that make info.Path invalid; outs are its
// derivation outputs.
func deleteOne(t *tx, info *PathInfo, outs map[string]storepath.Path) error {
	if err := t.del(validKey(info.Path)); err != nil {
		return err
	}
	for _, r := range info.References {
		if err := t.del(referrerKey(r, info.Path)); err != nil {
			return err
		}
	}
	for name, out := range outs {
		if err := t.del(drvOutKey(info.Path, name)); err != nil {
			return err
		}
		if err := t.del(deriverKey(out, info.Path)); err != nil {
			return err
		}
	}
	return nil
}

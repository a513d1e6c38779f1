package storedb

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"privnix/nix/storepath"
)

// view runs fn in a read-only transaction and labels its error.
//
// Readers share one read-only Badger transaction (a snapshot) for as long as
// no write has committed since it began: opening and discarding a transaction
// per read costs more than the read (Badger's watermarks hand every begin and
// end to a goroutine of their own). The snapshot is tagged with db.commits as
// it was read before the transaction began, and used only while db.commits
// still has that value. A writer bumps db.commits after its commit returns, so
// a read that starts after a write returned never uses a snapshot older than
// that write; a snapshot may hold a commit newer than its tag, which is only
// ever a write still in progress, and is replaced at the next read after it
// returns.
func (db *DB) view(what string, fn func(txn *badger.Txn) error) error {
	s := db.snap.acquire(db)
	err := fn(s.txn)
	db.snap.release(s)
	if err != nil {
		return fmt.Errorf("storedb: %s: %w", what, err)
	}
	return nil
}

// commitCounter counts commits; Add also calls onCommit.
type commitCounter struct {
	n        atomic.Int64
	onCommit func()
}

func (c *commitCounter) Add(d int64) int64 {
	v := c.n.Add(d)
	if c.onCommit != nil {
		c.onCommit()
	}
	return v
}

func (c *commitCounter) Load() int64 { return c.n.Load() }

// snapshots holds the shared read-only transaction (see view).
type snapshots struct {
	mu  sync.Mutex
	cur *snapshot // nil until the first read, and after close
}

type snapshot struct {
	txn   *badger.Txn
	gen   int64 // db.commits when txn began
	users int   // readers inside fn; guarded by snapshots.mu
	stale bool  // replaced: discarded by its last user
}

func (ss *snapshots) acquire(db *DB) *snapshot {
	gen := db.commits.Load()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.cur
	if s == nil || s.gen != gen {
		ss.retire()
		s = &snapshot{txn: db.bdb.NewTransaction(false), gen: gen}
		ss.cur = s
	}
	s.users++
	return s
}

func (ss *snapshots) release(s *snapshot) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s.users--; s.users == 0 && s.stale {
		s.txn.Discard()
	}
}

// retire drops the current snapshot; the caller holds mu.
func (ss *snapshots) retire() {
	if s := ss.cur; s != nil {
		s.stale = true
		if s.users == 0 {
			s.txn.Discard()
		}
		ss.cur = nil
	}
}

// close discards the current snapshot (before the database closes).
func (ss *snapshots) close() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.retire()
}

// IsValid reports whether p is valid.
func (db *DB) IsValid(p storepath.Path) (bool, error) {
	var ok bool
	err := db.view("is valid "+p.Base(), func(txn *badger.Txn) (err error) {
		ok, err = exists(txn, validKey(p))
		return err
	})
	return ok, err
}

// PathInfo returns p's info; ok is false when p is not valid.
func (db *DB) PathInfo(p storepath.Path) (info PathInfo, ok bool, err error) {
	err = db.view("path info "+p.Base(), func(txn *badger.Txn) (err error) {
		info, ok, err = readInfo(txn, p)
		return err
	})
	return info, ok, err
}

func readInfo(txn *badger.Txn, p storepath.Path) (PathInfo, bool, error) {
	val, err := getValue(txn, validKey(p))
	if err != nil || val == nil {
		return PathInfo{}, false, err
	}
	info, err := decodeInfo(p, val)
	return info, err == nil, err
}

// PathInfos returns the infos of those of ps that are valid, read in one
// consistent snapshot (for computing closures).
func (db *DB) PathInfos(ps []storepath.Path) (map[storepath.Path]PathInfo, error) {
	infos := make(map[storepath.Path]PathInfo, len(ps))
	err := db.view("path infos", func(txn *badger.Txn) error {
		for _, p := range ps {
			info, ok, err := readInfo(txn, p)
			if err != nil {
				return err
			}
			if ok {
				infos[p] = info
			}
		}
		return nil
	})
	return infos, err
}

// ClosureInfos returns, from one snapshot, the infos of the valid ones of ps
// (in ps's order), then those of up to extra more valid paths of their
// references' closure, breadth first, each path once.
func (db *DB) ClosureInfos(ps []storepath.Path, extra int) ([]PathInfo, error) {
	var out []PathInfo
	err := db.view("closure infos", func(txn *badger.Txn) error {
		seen := make(map[storepath.Path]bool, len(ps)+extra)
		for _, p := range ps {
			if seen[p] {
				continue
			}
			seen[p] = true
			info, ok, err := readInfo(txn, p)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, info)
			}
		}
		for next := 0; next < len(out) && extra > 0; next++ {
			for _, r := range out[next].References {
				if extra == 0 {
					break
				}
				if seen[r] {
					continue
				}
				seen[r] = true
				info, ok, err := readInfo(txn, r)
				if err != nil {
					return err
				}
				if ok {
					out = append(out, info)
					extra--
				}
			}
		}
		return nil
	})
	return out, err
}

// PathReferrers is one path's valid referrers, sorted by base.
type PathReferrers struct {
	Path      storepath.Path
	Referrers []storepath.Path
}

// maxClosureReferrers bounds the referrers ReferrersClosure reads.
const maxClosureReferrers = 1 << 16

// ReferrersClosure returns, from one snapshot, the referrers of each of ps,
// then of up to extra more paths of their referrers' closure, breadth first,
// each path once. It stops early, with whole entries, past
// maxClosureReferrers referrers read in all.
func (db *DB) ReferrersClosure(ps []storepath.Path, extra int) ([]PathReferrers, error) {
	var out []PathReferrers
	err := db.view("referrers closure", func(txn *badger.Txn) error {
		seen := make(map[storepath.Path]bool, len(ps)+extra)
		queue := make([]storepath.Path, 0, len(ps)+extra)
		for _, p := range ps {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
		limit, read := len(queue)+extra, 0
		for i := 0; i < len(queue) && i < limit && read < maxClosureReferrers; i++ {
			refs, err := scanSecond(txn, referrerPrefix(queue[i]), prefixReferrer)
			if err != nil {
				return err
			}
			read += len(refs)
			out = append(out, PathReferrers{Path: queue[i], Referrers: refs})
			for _, r := range refs {
				if !seen[r] {
					seen[r] = true
					queue = append(queue, r)
				}
			}
		}
		return nil
	})
	return out, err
}

// ValidAmong returns those of ps that are valid, in ps's order.
func (db *DB) ValidAmong(ps []storepath.Path) ([]storepath.Path, error) {
	var valid []storepath.Path
	err := db.view("query valid paths", func(txn *badger.Txn) error {
		for _, p := range ps {
			ok, err := exists(txn, validKey(p))
			if err != nil {
				return err
			}
			if ok {
				valid = append(valid, p)
			}
		}
		return nil
	})
	return valid, err
}

// scanSecond lists, sorted, the paths named by the last field of every key
// under prefix (keys "<x>/<a>/<b>" → b).
func scanSecond(txn *badger.Txn, prefix []byte, keyPrefix string) ([]storepath.Path, error) {
	var ps []storepath.Path
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		_, b, err := splitPair(it.Item().Key(), keyPrefix)
		if err != nil {
			return nil, err
		}
		p, err := parseBaseField("key field", b)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Referrers returns the valid paths that refer to p (including p itself if it
// refers to itself), sorted by base.
func (db *DB) Referrers(p storepath.Path) ([]storepath.Path, error) {
	var ps []storepath.Path
	err := db.view("referrers of "+p.Base(), func(txn *badger.Txn) (err error) {
		ps, err = scanSecond(txn, referrerPrefix(p), prefixReferrer)
		return err
	})
	return ps, err
}

// ValidDerivers returns the valid derivations that have p as an output,
// sorted by base. p itself need not be valid.
func (db *DB) ValidDerivers(p storepath.Path) ([]storepath.Path, error) {
	var ps []storepath.Path
	err := db.view("derivers of "+p.Base(), func(txn *badger.Txn) (err error) {
		ps, err = scanSecond(txn, deriverPrefix(p), prefixDeriver)
		return err
	})
	return ps, err
}

// DerivationOutputs returns drv's recorded outputs (output name → path); empty
// when drv is not valid or has none recorded.
func (db *DB) DerivationOutputs(drv storepath.Path) (map[string]storepath.Path, error) {
	var outs map[string]storepath.Path
	err := db.view("derivation outputs of "+drv.Base(), func(txn *badger.Txn) (err error) {
		outs, err = readDrvOutputs(txn, drv)
		return err
	})
	return outs, err
}

func readDrvOutputs(txn *badger.Txn, drv storepath.Path) (map[string]storepath.Path, error) {
	outs := map[string]storepath.Path{}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: drvOutPrefix(drv), PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		_, name, err := splitPair(it.Item().Key(), prefixDrvOut)
		if err != nil {
			return nil, err
		}
		val, err := it.Item().ValueCopy(nil)
		if err != nil {
			return nil, err
		}
		out, err := parseBaseField("output of "+drv.Base(), string(val))
		if err != nil {
			return nil, err
		}
		outs[name] = out
	}
	return outs, nil
}

// ByHashPart returns the valid path whose hash part is hashPart.
func (db *DB) ByHashPart(hashPart string) (p storepath.Path, ok bool, err error) {
	if len(hashPart) != storepath.HashLen {
		return p, false, nil
	}
	prefix := []byte(prefixValid + hashPart + "-")
	err = db.view("path from hash part "+hashPart, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		it.Rewind()
		if !it.Valid() {
			return nil
		}
		p, err = parseKeyPath(it.Item().Key(), prefixValid)
		ok = err == nil
		return err
	})
	return p, ok, err
}

// EachValid calls fn for every valid path, in base order, from one snapshot;
// an error from fn stops the walk and is returned.
func (db *DB) EachValid(fn func(storepath.Path) error) error {
	return db.view("list valid paths", func(txn *badger.Txn) error {
		return eachKey(txn, prefixValid, func(p storepath.Path) error { return fn(p) })
	})
}

// AllValid returns every valid path, sorted by base.
func (db *DB) AllValid() ([]storepath.Path, error) {
	var ps []storepath.Path
	err := db.EachValid(func(p storepath.Path) error {
		ps = append(ps, p)
		return nil
	})
	return ps, err
}

// Pending returns every path marked pending, sorted by base: at start-up the
// monitor removes from the store each one that is not valid.
func (db *DB) Pending() ([]storepath.Path, error) {
	var ps []storepath.Path
	err := db.view("list pending paths", func(txn *badger.Txn) error {
		return eachKey(txn, prefixPending, func(p storepath.Path) error {
			ps = append(ps, p)
			return nil
		})
	})
	return ps, err
}

// eachKey calls fn with the path of every key "<prefix><base>".
func eachKey(txn *badger.Txn, prefix string, fn func(storepath.Path) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		key := it.Item().Key()
		if bytes.IndexByte(key[len(prefix):], '/') >= 0 {
			return fmt.Errorf("%w: malformed key %q", ErrCorrupt, key)
		}
		p, err := parseKeyPath(key, prefix)
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

// Totals counts the valid paths and adds up their NAR sizes, from one
// snapshot (privnix status).
func (db *DB) Totals() (paths, narBytes uint64, err error) {
	err = db.view("totals", func(txn *badger.Txn) error {
		return eachKey(txn, prefixValid, func(p storepath.Path) error {
			info, _, err := readInfo(txn, p)
			paths++
			narBytes += info.NarSize
			return err
		})
	})
	return paths, narBytes, err
}

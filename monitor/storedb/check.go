package storedb

import (
	"bytes"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"privnix/nix/storepath"
)

// Check reads the whole database in one snapshot and verifies the schema's
// invariants (see schema.go): every value decodes, every reference of a valid
// path is valid and indexed, every index entry is backed by a valid path. It
// returns the first violation, wrapping ErrCorrupt. It holds every valid
// path's references in memory; it is for tests and `privnix doctor`.
func (db *DB) Check() error {
	return db.view("check", func(txn *badger.Txn) error {
		c := checker{txn: txn, refs: map[storepath.Path][]storepath.Path{}}
		return c.run()
	})
}

type checker struct {
	txn  *badger.Txn
	refs map[storepath.Path][]storepath.Path // valid path → its references
}

func (c *checker) run() error {
	steps := []func() error{c.loadValid, c.checkRefs, c.checkReferrers, c.checkDrvOutputs, c.checkDerivers, c.checkPrefixes}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) loadValid() error {
	it := c.txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixValid), PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		p, err := parseKeyPath(it.Item().Key(), prefixValid)
		if err != nil {
			return err
		}
		val, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		info, err := decodeInfo(p, val)
		if err != nil {
			return err
		}
		c.refs[p] = info.References
	}
	return nil
}

func (c *checker) checkRefs() error {
	for p, refs := range c.refs {
		for _, r := range refs {
			if _, ok := c.refs[r]; !ok {
				return fmt.Errorf("%w: %s refers to %s, which is not valid", ErrCorrupt, p.Base(), r.Base())
			}
			ok, err := exists(c.txn, referrerKey(r, p))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: no referrer entry %s ← %s", ErrCorrupt, r.Base(), p.Base())
			}
		}
	}
	return nil
}

// eachPair calls fn(a, b, value) for every key "<prefix><a>/<b>".
func (c *checker) eachPair(prefix string, fn func(a, b storepath.Path, name string, val []byte) error) error {
	it := c.txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		a, b, err := splitPair(it.Item().Key(), prefix)
		if err != nil {
			return err
		}
		pa, err := parseBaseField("key", a)
		if err != nil {
			return err
		}
		val, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		var pb storepath.Path
		if prefix != prefixDrvOut { // d/<drv>/<output name>: b is a name
			if pb, err = parseBaseField("key", b); err != nil {
				return err
			}
		}
		if err := fn(pa, pb, b, val); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) checkReferrers() error {
	return c.eachPair(prefixReferrer, func(ref, referrer storepath.Path, _ string, _ []byte) error {
		refs, ok := c.refs[referrer]
		if !ok {
			return fmt.Errorf("%w: referrer entry %s ← %s from a path that is not valid", ErrCorrupt, ref.Base(), referrer.Base())
		}
		for _, r := range refs {
			if r == ref {
				return nil
			}
		}
		return fmt.Errorf("%w: referrer entry %s ← %s not among its references", ErrCorrupt, ref.Base(), referrer.Base())
	})
}

func (c *checker) checkDrvOutputs() error {
	return c.eachPair(prefixDrvOut, func(drv, _ storepath.Path, name string, val []byte) error {
		if _, ok := c.refs[drv]; !ok {
			return fmt.Errorf("%w: output %q of %s, which is not valid", ErrCorrupt, name, drv.Base())
		}
		out, err := parseBaseField("output of "+drv.Base(), string(val))
		if err != nil {
			return err
		}
		ok, err := exists(c.txn, deriverKey(out, drv))
		if err == nil && !ok {
			err = fmt.Errorf("%w: no deriver entry %s → %s", ErrCorrupt, drv.Base(), out.Base())
		}
		return err
	})
}

func (c *checker) checkDerivers() error {
	return c.eachPair(prefixDeriver, func(out, drv storepath.Path, _ string, _ []byte) error {
		outs, err := readDrvOutputs(c.txn, drv)
		if err != nil {
			return err
		}
		for _, o := range outs {
			if o == out {
				return nil
			}
		}
		return fmt.Errorf("%w: deriver entry %s → %s without its output", ErrCorrupt, drv.Base(), out.Base())
	})
}

// checkPrefixes refuses keys outside the schema.
func (c *checker) checkPrefixes() error {
	known := [][]byte{[]byte(prefixValid), []byte(prefixReferrer), []byte(prefixDrvOut),
		[]byte(prefixDeriver), []byte(prefixPending), []byte(keySchema), []byte(keyInstance)}
	it := c.txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		key := it.Item().Key()
		ok := false
		for _, k := range known {
			ok = ok || bytes.HasPrefix(key, k)
		}
		if !ok {
			return fmt.Errorf("%w: unknown key %q", ErrCorrupt, key)
		}
	}
	return nil
}

package monitor

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"privnix/ipc/genpage"
	"privnix/monitor/storedb"
	"privnix/monitor/storefs"
	"privnix/nix/storepath"
)

// storeState is the store the monitor serves: its directory and database.
// nix-daemon opens the store afresh for every connection, so scripts that wipe
// and re-create the state directory between two connections work; the
// monitor keeps that promise by checking, at each accept, that the database
// on disk is still the one it opened, and reopening it if not.
type storeState struct {
	dir     storepath.Dir
	dbPath  string
	staging string
	mu      sync.RWMutex   // held for reading by every request that uses db; for writing to reopen
	db      *storedb.DB    // guarded by mu
	fs      *storefs.Store // guarded by mu
	dirID   [2]uint64      // device and inode of the store directory fs opened; guarded by mu
	// abandoned are databases whose state directory was replaced; guarded by mu.
	abandoned []*storedb.DB
	// gen is bumped after every database commit and every reopening:
	// frontends drop their cached answers when it moves (ipc/genpage); nil
	// if none could be made (frontends then cache nothing).
	gen *genpage.Page
}

func openStore(m *Monitor) (*storeState, error) {
	dir, err := storepath.NewDir(m.cfg.Paths.StoreDir)
	if err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	st := &storeState{dir: dir, dbPath: m.cfg.Paths.DBDir(), staging: m.cfg.Paths.StagingDir()}
	if st.gen, err = genpage.New(); err != nil {
		m.log.Warn("no store generation page: frontends will not cache query answers", "err", err)
	}
	if err := st.openFS(); err != nil {
		return nil, err
	}
	if st.db, err = storedb.Open(st.dbPath, storedb.Options{StoreDir: dir, Logger: m.log, OnCommit: st.gen.Bump}); err != nil {
		st.fs.Close()
		return nil, err
	}
	if err := st.cleanPending(m); err != nil {
		st.db.Close()
		return nil, err
	}
	return st, nil
}

// cleanPending is DESIGN.md step 5's recovery: every path recorded as pending
// but never made valid is removed from the store — and nothing else.
func (st *storeState) cleanPending(m *Monitor) error {
	pending, err := st.db.Pending()
	if err != nil || len(pending) == 0 {
		return err
	}
	for _, p := range pending {
		m.audit.Warn("removing a path left pending by a crash", "path", st.dir.String(p))
		// A crash between "pending" and the rename leaves nothing to remove.
		if ok, err := st.fs.Exists(p.Base()); err != nil {
			return fmt.Errorf("looking for pending %s: %w", p.Base(), err)
		} else if !ok {
			continue
		}
		if err := st.fs.Delete(p.Base()); err != nil {
			return fmt.Errorf("removing pending %s: %w", p.Base(), err)
		}
	}
	return st.db.ClearPending(pending...)
}

// openFS opens the store directory for storefs and removes leftover staging
// directories; mu must be held (or st not yet shared).
func (st *storeState) openFS() error {
	fs, err := storefs.Open(string(st.dir), st.staging)
	if err != nil {
		return err
	}
	if err := fs.RemoveStaging(); err != nil {
		fs.Close()
		return fmt.Errorf("removing leftover staging directories: %w", err)
	}
	id, err := dirID(string(st.dir))
	if err != nil {
		fs.Close()
		return err
	}
	st.fs, st.dirID = fs, id
	return nil
}

func dirID(path string) ([2]uint64, error) {
	var s unix.Stat_t
	if err := unix.Lstat(path, &s); err != nil {
		return [2]uint64{}, err
	}
	return [2]uint64{s.Dev, s.Ino}, nil
}

// current reports whether the store and state directories are still the
// ones opened.
func (st *storeState) current() (bool, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	id, err := dirID(string(st.dir))
	if err != nil || id != st.dirID {
		return false, nil
	}
	return st.db.Current()
}

// refresh reopens the store if its store or state directory was replaced
// since the last connection.
func (st *storeState) refresh(m *Monitor) error {
	if cur, err := st.current(); err != nil || cur {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	defer st.gen.Bump() // answers cached from the old store are out of date
	m.log.Warn("the store or state directory was replaced; reopening the store", "store", string(st.dir), "db", st.dbPath)
	// The replaced database is left open and unused, never closed: Badger's
	// Close flushes its memtable to its directory's path, which now belongs
	// to the new database (or to nothing, and then Close waits for ever).
	// This costs the old instance's memory, once per replacement.
	st.abandoned = append(st.abandoned, st.db)
	st.fs.Close()
	if err := st.openFS(); err != nil {
		return err
	}
	db, err := storedb.Open(st.dbPath, storedb.Options{StoreDir: st.dir, Logger: m.log, OnCommit: st.gen.Bump})
	if err != nil {
		return err
	}
	st.db = db
	return nil
}

// files returns the current storefs.
func (st *storeState) files() *storefs.Store {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.fs
}

// with runs fn with the current database.
func (st *storeState) with(fn func(db *storedb.DB) error) error {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return fn(st.db)
}

func (st *storeState) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.db.Close()
	st.fs.Close()
}

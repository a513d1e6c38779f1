package monitor

import (
	"fmt"
	"sync"

	"privnix/monitor/storedb"
	"privnix/nix/storepath"
)

// storeState is the store the monitor serves: its directory and database.
// nix-daemon opens the store afresh for every connection, so scripts that wipe
// and re-create the state directory between two connections work; the
// monitor keeps that promise by checking, at each accept, that the database
// on disk is still the one it opened, and reopening it if not.
type storeState struct {
	dir    storepath.Dir
	dbPath string
	mu     sync.RWMutex // held for reading by every request that uses db; for writing to reopen
	db     *storedb.DB  // guarded by mu
}

func openStore(m *Monitor) (*storeState, error) {
	dir, err := storepath.NewDir(m.cfg.Paths.StoreDir)
	if err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	st := &storeState{dir: dir, dbPath: m.cfg.Paths.DBDir()}
	if st.db, err = storedb.Open(st.dbPath, storedb.Options{StoreDir: dir, Logger: m.log}); err != nil {
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
		m.log.Warn("removing a path left pending by a crash", "path", st.dir.String(p))
		if err := m.fs.Delete(p.Base()); err != nil {
			return fmt.Errorf("removing pending %s: %w", p.Base(), err)
		}
	}
	return st.db.ClearPending(pending...)
}

// refresh reopens the database if its state directory was replaced.
func (st *storeState) refresh(m *Monitor) error {
	st.mu.RLock()
	cur, err := st.db.Current()
	st.mu.RUnlock()
	if err != nil || cur {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if cur, err := st.db.Current(); err != nil || cur {
		return err
	}
	m.log.Warn("the state directory was replaced; reopening the store database", "db", st.dbPath)
	st.db.Close()
	db, err := storedb.Open(st.dbPath, storedb.Options{StoreDir: st.dir, Logger: m.log})
	if err != nil {
		return err
	}
	st.db = db
	return nil
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
}

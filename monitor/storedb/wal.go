package storedb

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// removeEmptyWALs works around badger#2207: a crash between Badger creating a
// memtable WAL (<n>.mem) and sizing it leaves an empty file, and badger.Open
// then fails with "Create a new file". An empty WAL holds no entries, so
// removing it loses nothing. It runs only while holding Badger's own directory
// lock (flock on <dir>/LOCK), so a Badger open elsewhere is never disturbed; if
// the lock is taken it does nothing and badger.Open reports the lock.
func removeEmptyWALs(dir string, log *slog.Logger) error {
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close() // releases the flock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil
		}
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		if fi, err := e.Info(); err != nil || fi.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
		if log != nil {
			log.Warn("storedb: removed an empty memtable WAL left by a crash", "file", e.Name())
		}
	}
	return nil
}

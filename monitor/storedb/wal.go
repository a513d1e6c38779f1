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

// removeEmptyLogs works around badger#2207 and its value-log twin: Badger
// creates a log file (O_CREATE|O_EXCL) and only then sizes it (ftruncate), so a
// crash between the two leaves an empty file, and badger.Open then fails on it
// with "Create a new file" for ever:
//   - a memtable WAL, <n>.mem, created whenever a memtable is started;
//   - a value-log file, <n>.vlog, created by every badger.Open (it never writes
//     to the previous one), so a process killed while opening the database
//     leaves a state directory that no later Open accepts ("Open existing
//     file: .../<n>.vlog ... Create a new file").
//
// An empty file holds no header and no entries, and nothing in the LSM tree
// can point into it, so removing it loses nothing. It runs only while holding
// Badger's own directory lock (flock on <dir>/LOCK), so a Badger open elsewhere
// is never disturbed; if the lock is taken it does nothing and badger.Open
// reports the lock.
func removeEmptyLogs(dir string, log *slog.Logger) error {
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
		if !e.Type().IsRegular() || !isLogFile(e.Name()) {
			continue
		}
		if fi, err := e.Info(); err != nil || fi.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
		if log != nil {
			log.Warn("storedb: removed an empty Badger log file left by a crash", "file", e.Name())
		}
	}
	return nil
}

// isLogFile: a memtable WAL or a value-log file (the files Badger creates empty
// and sizes afterwards).
func isLogFile(name string) bool {
	return strings.HasSuffix(name, ".mem") || strings.HasSuffix(name, ".vlog")
}

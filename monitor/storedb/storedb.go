// Package storedb is the store database (valid paths, references, derivation outputs, pending paths), kept in Badger and owned by the monitor alone.
package storedb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// Errors every failure wraps (errors.Is).
var (
	// ErrCorrupt: a key or value in the database does not decode.
	ErrCorrupt = errors.New("store database corrupt")
	// ErrNotValid: an operation needs a valid path and it is not.
	ErrNotValid = errors.New("path is not valid")
	// ErrMissingReference: RegisterValid was given a reference that is neither
	// valid nor in the same batch.
	ErrMissingReference = errors.New("reference is not valid")
	// ErrCycle: a batch's references form a cycle other than a self-reference.
	ErrCycle = errors.New("cycle detected in references")
	// ErrLiveReferrer: Delete was asked to remove a path a valid path outside
	// the set still refers to.
	ErrLiveReferrer = errors.New("path still has a valid referrer")
	// ErrBadInfo: a PathInfo handed in is malformed (zero path, bad hash, …).
	ErrBadInfo = errors.New("bad path info")
)

// PathInfo is what the database knows about one valid path (Nix's ValidPaths row
// plus its Refs).
type PathInfo struct {
	Path             storepath.Path
	Deriver          storepath.Path // zero: none
	NarHash          nixhash.Hash
	NarSize          uint64
	References       []storepath.Path // sorted by base, no duplicates; may include Path
	RegistrationTime int64            // unix seconds; 0 in RegisterValid means now
	Ultimate         bool
	Sigs             []string
	CA               string
}

// Options configure Open.
type Options struct {
	// StoreDir is used only to print absolute paths in errors.
	StoreDir storepath.Dir
	// Logger receives Badger's warnings and errors; nil discards them.
	Logger *slog.Logger
	// MemTableSize is Badger's memtable size; 0 means DefaultMemTableSize, and
	// anything below 1 MiB is refused.
	// A transaction is capped at 15% of it, which is what RegisterValid splits by.
	MemTableSize int64
	// OnCommit, if set, is called after every write transaction commits,
	// before the write returns (the monitor bumps its generation page).
	OnCommit func()
}

// valueThreshold: values up to this size stay in the LSM tree (nearly all
// path infos); it must stay below the transaction cap of the smallest memtable.
const valueThreshold = 32 << 10

// DefaultMemTableSize keeps an idle daemon far below 100 MiB RSS.
const DefaultMemTableSize = 16 << 20

// DB is the open store database. Its methods are safe for concurrent use.
type DB struct {
	bdb      *badger.DB
	dir      string
	storeDir storepath.Dir
	instance string
	dirID    fileID // the state directory as opened; see Current
	lockID   fileID // Badger's LOCK file as opened

	// gcMu orders registration against deletion (DESIGN.md "Garbage collection"):
	// RegisterValid and SetDerivationOutputs hold it for reading, Delete for
	// writing, so a referrer check in Delete cannot miss a registration that
	// commits concurrently. Lock order: gcMu, then Badger's own locks.
	gcMu sync.RWMutex

	// commits counts committed write transactions (tests check batch splits;
	// readers' shared snapshot is tagged with it, see view) and calls
	// Options.OnCommit after each.
	commits commitCounter
	snap    snapshots
}

type fileID struct{ dev, ino uint64 }

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("stat %s: no device/inode", path)
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// badgerOptions tunes Badger for a small daemon: small memtables, no block
// cache (no compression, so tables are read through mmap), small tables and
// value-log files, one version per key, every commit fsynced.
func badgerOptions(dir string, opts Options) badger.Options {
	mem := opts.MemTableSize
	if mem == 0 {
		mem = DefaultMemTableSize
	}
	return badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		WithCompression(options.None).
		WithMemTableSize(mem).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(2 << 20).
		WithBaseLevelSize(8 << 20).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(16 << 20).
		WithNumCompactors(2).
		WithMetricsEnabled(false).
		WithLogger(badgerLogger{opts.Logger})
}

// Open opens (creating if needed) the database in dir.
func Open(dir string, opts Options) (*DB, error) {
	if opts.MemTableSize != 0 && opts.MemTableSize < 1<<20 {
		return nil, fmt.Errorf("storedb: open %s: memtable size %d is below 1 MiB", dir, opts.MemTableSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("storedb: create %s: %w", dir, err)
	}
	dirID, err := statID(dir)
	if err != nil {
		return nil, fmt.Errorf("storedb: %w", err)
	}
	if err := removeEmptyLogs(dir, opts.Logger); err != nil {
		return nil, fmt.Errorf("storedb: open %s: %w", dir, err)
	}
	bdb, err := badger.Open(badgerOptions(dir, opts))
	if err != nil {
		return nil, fmt.Errorf("storedb: open %s: %w", dir, err)
	}
	db := &DB{bdb: bdb, dir: dir, storeDir: opts.StoreDir, dirID: dirID}
	db.commits.onCommit = opts.OnCommit
	if db.lockID, err = statID(filepath.Join(dir, "LOCK")); err == nil {
		err = db.initMeta()
	}
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("storedb: open %s: %w", dir, err)
	}
	return db, nil
}

// initMeta checks the schema version, writing it and a fresh instance id into
// an empty database.
func (db *DB) initMeta() error {
	return db.bdb.Update(func(txn *badger.Txn) error {
		schema, err := getValue(txn, []byte(keySchema))
		if err != nil {
			return err
		}
		if schema == nil {
			return db.initEmpty(txn)
		}
		if string(schema) != schemaVersion {
			return fmt.Errorf("%w: schema version %q, this program knows %q", ErrCorrupt, schema, schemaVersion)
		}
		inst, err := getValue(txn, []byte(keyInstance))
		if err != nil {
			return err
		}
		if len(inst) != 32 {
			return fmt.Errorf("%w: instance id %q", ErrCorrupt, inst)
		}
		db.instance = string(inst)
		return nil
	})
}

func (db *DB) initEmpty(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
	it.Rewind()
	nonEmpty := it.Valid()
	it.Close()
	if nonEmpty {
		return fmt.Errorf("%w: keys present but no %s", ErrCorrupt, keySchema)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	db.instance = hex.EncodeToString(id[:])
	if err := txn.Set([]byte(keySchema), []byte(schemaVersion)); err != nil {
		return err
	}
	return txn.Set([]byte(keyInstance), []byte(db.instance))
}

// Close flushes and closes the database.
func (db *DB) Close() error {
	db.snap.close()
	if err := db.bdb.Close(); err != nil {
		return fmt.Errorf("storedb: close %s: %w", db.dir, err)
	}
	return nil
}

// InstanceID is a random id written when the database was created; a wiped
// and re-created state directory gets a new one.
func (db *DB) InstanceID() string { return db.instance }

// Current reports whether the state directory on disk is still the one this
// DB opened: same directory inode and same Badger LOCK file. Scripts that wipe
// and re-create the state directory between two connections work with
// nix-daemon, which opens the store per connection; the monitor calls Current
// at accept time and reopens when it returns false. A directory that has
// vanished is not current (false, nil).
func (db *DB) Current() (bool, error) {
	for _, c := range []struct {
		path string
		id   fileID
	}{{db.dir, db.dirID}, {filepath.Join(db.dir, "LOCK"), db.lockID}} {
		id, err := statID(c.path)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("storedb: %w", err)
		}
		if id != c.id {
			return false, nil
		}
	}
	return true, nil
}

// getValue returns key's value, nil if absent.
func getValue(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := item.ValueCopy(nil)
	if v == nil && err == nil {
		v = []byte{}
	}
	return v, err
}

func exists(txn *badger.Txn, key []byte) (bool, error) {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// show prints p as an absolute path when the store dir is known.
func (db *DB) show(p storepath.Path) string {
	if db.storeDir == "" {
		return p.Base()
	}
	return db.storeDir.String(p)
}

// badgerLogger sends Badger's warnings and errors to slog; its info and debug
// chatter (compactions, flushes) is dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, f string, args ...any) {
	if b.l != nil {
		b.l.Log(context.Background(), level, "badger", "msg", fmt.Sprintf(f, args...))
	}
}

func (b badgerLogger) Errorf(f string, args ...any)   { b.log(slog.LevelError, f, args...) }
func (b badgerLogger) Warningf(f string, args ...any) { b.log(slog.LevelWarn, f, args...) }
func (badgerLogger) Infof(string, ...any)             {}
func (badgerLogger) Debugf(string, ...any)            {}

package storedb

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"

	"privnix/nix/nixbase32"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

const testStoreDir = storepath.Dir("/nix/store")

// mkPath makes a valid store path named name with a hash part derived from it.
func mkPath(t testing.TB, name string) storepath.Path {
	t.Helper()
	sum := sha256.Sum256([]byte(name))
	p, err := storepath.ParseBase(nixbase32.EncodeToString(nixhash.Compress(sum[:], 20)) + "-" + name)
	if err != nil {
		t.Fatalf("mkPath %q: %v", name, err)
	}
	return p
}

// mkInfo makes a path info for p with the given references.
func mkInfo(p storepath.Path, refs ...storepath.Path) PathInfo {
	refs = slices.Clone(refs)
	slices.SortFunc(refs, comparePaths)
	return PathInfo{
		Path:             p,
		NarHash:          nixhash.Sum(nixhash.SHA256, []byte(p.Base())),
		NarSize:          uint64(len(p.Base())) * 100,
		References:       slices.Compact(refs),
		RegistrationTime: 1700000000,
	}
}

func openTest(t testing.TB, dir string, mem int64) *DB {
	t.Helper()
	db, err := Open(dir, Options{StoreDir: testStoreDir, MemTableSize: mem})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newTestDB(t testing.TB) *DB { return openTest(t, t.TempDir(), 0) }

func mustRegister(t testing.TB, db *DB, infos []PathInfo, outs map[storepath.Path]map[string]storepath.Path) {
	t.Helper()
	if err := db.RegisterValid(infos, outs); err != nil {
		t.Fatalf("RegisterValid: %v", err)
	}
}

func mustCheck(t testing.TB, db *DB) {
	t.Helper()
	if err := db.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func bases(ps []storepath.Path) []string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Base()
	}
	return s
}

func sameBases(got, want []storepath.Path) error {
	w := slices.Clone(want)
	slices.SortFunc(w, comparePaths)
	if !slices.Equal(bases(got), bases(w)) {
		return fmt.Errorf("got %v, want %v", bases(got), bases(w))
	}
	return nil
}

func wantErr(err, want error) error {
	if want == nil && err != nil {
		return fmt.Errorf("unexpected error: %v", err)
	}
	if want != nil && !errors.Is(err, want) {
		return fmt.Errorf("error %v, want %v", err, want)
	}
	return nil
}

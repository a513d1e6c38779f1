package gc

import (
	"crypto/sha256"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"privnix/monitor/storedb"
	"privnix/nix/nixbase32"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// testStore is a real store: a directory of store objects, a state directory
// and a storedb in a temporary directory.
type testStore struct {
	t        testing.TB
	root     string
	storeDir storepath.Dir
	stateDir string
	db       *storedb.DB
}

func newStore(t testing.TB) *testStore {
	t.Helper()
	root := t.TempDir()
	s := &testStore{t: t, root: root, storeDir: storepath.Dir(filepath.Join(root, "store")), stateDir: filepath.Join(root, "state")}
	for _, d := range []string{string(s.storeDir), s.stateDir, filepath.Join(s.stateDir, "gcroots", "auto"),
		filepath.Join(s.stateDir, "gcroots", "per-user"), filepath.Join(s.stateDir, "profiles")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	db, err := storedb.Open(filepath.Join(s.stateDir, "db"), storedb.Options{StoreDir: s.storeDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s.db = db
	return s
}

func mkPath(t testing.TB, name string) storepath.Path {
	t.Helper()
	sum := sha256.Sum256([]byte(name))
	p, err := storepath.ParseBase(nixbase32.EncodeToString(nixhash.Compress(sum[:], 20)) + "-" + name)
	if err != nil {
		t.Fatalf("mkPath %q: %v", name, err)
	}
	return p
}

type pathSpec struct {
	name    string
	refs    []string
	deriver string
	size    uint64 // NarSize; 0 = 1000
}

// add creates each path's directory (with a file) in the store and
// registers the batch; drvOutputs maps a .drv's name to output name → path name.
func (s *testStore) add(specs []pathSpec, drvOutputs map[string]map[string]string) map[string]storepath.Path {
	t := s.t
	t.Helper()
	ps := map[string]storepath.Path{}
	for _, sp := range specs {
		ps[sp.name] = mkPath(t, sp.name)
	}
	get := func(n string) storepath.Path {
		if p, ok := ps[n]; ok {
			return p
		}
		return mkPath(t, n)
	}
	var infos []storedb.PathInfo
	for _, sp := range specs {
		p := ps[sp.name]
		dir := filepath.Join(string(s.storeDir), p.Base())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "data"), []byte(sp.name), 0o444); err != nil {
			t.Fatal(err)
		}
		var refs []storepath.Path
		for _, r := range sp.refs {
			refs = append(refs, get(r))
		}
		slices.SortFunc(refs, comparePaths)
		size := sp.size
		if size == 0 {
			size = 1000
		}
		info := storedb.PathInfo{Path: p, NarHash: nixhash.Sum(nixhash.SHA256, []byte(p.Base())),
			NarSize: size, References: slices.Compact(refs), RegistrationTime: 1700000000}
		if sp.deriver != "" {
			info.Deriver = get(sp.deriver)
		}
		infos = append(infos, info)
	}
	outs := map[storepath.Path]map[string]storepath.Path{}
	for drv, m := range drvOutputs {
		o := map[string]storepath.Path{}
		for name, out := range m {
			o[name] = get(out)
		}
		outs[get(drv)] = o
	}
	if err := s.db.RegisterValid(infos, outs); err != nil {
		t.Fatalf("RegisterValid: %v", err)
	}
	return ps
}

func (s *testStore) exists(p storepath.Path) bool {
	_, err := os.Lstat(filepath.Join(string(s.storeDir), p.Base()))
	return err == nil
}

func (s *testStore) valid(p storepath.Path) bool {
	ok, err := s.db.IsValid(p)
	if err != nil {
		s.t.Fatal(err)
	}
	return ok
}

// checkConsistent: the DB is well-formed, every valid path is in the store,
// no pending mark is left.
func (s *testStore) checkConsistent() {
	t := s.t
	t.Helper()
	if err := s.db.Check(); err != nil {
		t.Fatalf("db.Check: %v", err)
	}
	all, err := s.db.AllValid()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		if !s.exists(p) {
			t.Errorf("%s is valid but not in the store", p.Base())
		}
	}
	pend, err := s.db.Pending()
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 0 {
		t.Errorf("pending marks left: %v", pend)
	}
}

// deps is the monitor's side of Collect, for tests: the real DB, files
// removed from the real store directory, temp roots in memory under a lock.
type deps struct {
	s        *testStore
	mu       sync.Mutex
	temp     map[storepath.Path]bool
	deleted  []storepath.Path
	beforeLk func(p storepath.Path) // runs before the lock is taken (a racing client)
	failRm   storepath.Path         // Delete of this path fails
}

func newDeps(s *testStore) *deps { return &deps{s: s, temp: map[storepath.Path]bool{}} }

func (d *deps) DB() DB { return d.s.db }

func (d *deps) Delete(name string) error {
	p, err := storepath.ParseBase(name)
	if err != nil {
		return err
	}
	if p == d.failRm {
		return os.ErrPermission
	}
	d.deleted = append(d.deleted, p)
	return os.RemoveAll(filepath.Join(string(d.s.storeDir), name))
}

func (d *deps) AddTempRoot(p storepath.Path) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.temp[p] = true
}

func (d *deps) TempRoots() []storepath.Path {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ps []storepath.Path
	for p := range d.temp {
		ps = append(ps, p)
	}
	return ps
}

func (d *deps) LockForDelete(p storepath.Path) (func(), bool) {
	if d.beforeLk != nil {
		d.beforeLk(p)
	}
	d.mu.Lock()
	return d.mu.Unlock, !d.temp[p]
}

// lookupUID returns the uid of a test user, skipping nothing: the users are
// part of the test machine's set-up.
func lookupUID(t *testing.T, name string) uint32 {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("test user %s: %v", name, err)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

func bases(ps []storepath.Path) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Base()
	}
	slices.Sort(out)
	return out
}

func namesOf(ps map[string]storepath.Path, names ...string) []storepath.Path {
	out := make([]storepath.Path, len(names))
	for i, n := range names {
		out[i] = ps[n]
	}
	return out
}

// batchDeps is deps with BatchLocker: one lock for many paths.
type batchDeps struct{ *deps }

func (b batchDeps) LockForDeleteMany(ps []storepath.Path) (func(), []bool) {
	if b.beforeLk != nil {
		for _, p := range ps {
			b.beforeLk(p)
		}
	}
	b.mu.Lock()
	dead := make([]bool, len(ps))
	for i, p := range ps {
		dead[i] = !b.temp[p]
	}
	return b.mu.Unlock, dead
}

// modes runs f with per-path locking and with batches.
func modes(t *testing.T, f func(t *testing.T, wrap func(*deps) Deps)) {
	t.Run("per-path", func(t *testing.T) { f(t, func(d *deps) Deps { return d }) })
	t.Run("batched", func(t *testing.T) { f(t, func(d *deps) Deps { return batchDeps{d} }) })
}

package storedb

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

func TestRoundTrip(t *testing.T) {
	db := newTestDB(t)
	dep := mkPath(t, "dep")
	mustRegister(t, db, []PathInfo{mkInfo(dep)}, nil)
	self := mkPath(t, "self")
	tests := []struct {
		name string
		info PathInfo
	}{
		{"minimal", PathInfo{Path: mkPath(t, "minimal"), NarHash: nixhash.Sum(nixhash.SHA256, nil), RegistrationTime: 1}},
		{"full", PathInfo{
			Path: mkPath(t, "full"), Deriver: mkPath(t, "full.drv"),
			NarHash: nixhash.Sum(nixhash.SHA512, []byte("x")), NarSize: 1 << 40,
			References: []storepath.Path{dep}, RegistrationTime: 1700000000, Ultimate: true,
			Sigs: []string{"cache.example.org-1:c2ln", "other:b3RoZXI="},
			CA:   "fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
		}},
		{"self reference", mkInfo(self, self, dep)},
		{"negative time", PathInfo{Path: mkPath(t, "old"), NarHash: nixhash.Sum(nixhash.SHA1, nil), RegistrationTime: -5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustRegister(t, db, []PathInfo{tt.info}, nil)
			got, ok, err := db.PathInfo(tt.info.Path)
			if err != nil || !ok {
				t.Fatalf("PathInfo: ok=%v err=%v", ok, err)
			}
			want := tt.info
			if want.References == nil {
				want.References = []storepath.Path{}
			}
			if want.Sigs == nil {
				want.Sigs = []string{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
			if valid, err := db.IsValid(tt.info.Path); !valid || err != nil {
				t.Fatalf("IsValid = %v, %v", valid, err)
			}
		})
	}
	mustCheck(t, db)
}

func TestRegistrationTimeZeroMeansNow(t *testing.T) {
	db := newTestDB(t)
	info := mkInfo(mkPath(t, "now"))
	info.RegistrationTime = 0
	mustRegister(t, db, []PathInfo{info}, nil)
	got, _, err := db.PathInfo(info.Path)
	if err != nil || got.RegistrationTime < 1700000000 {
		t.Fatalf("registration time %d, err %v", got.RegistrationTime, err)
	}
}

func TestIndexes(t *testing.T) {
	db := newTestDB(t)
	libc, gcc, hello := mkPath(t, "libc"), mkPath(t, "gcc"), mkPath(t, "hello")
	drv, drv2, dev := mkPath(t, "hello.drv"), mkPath(t, "hello2.drv"), mkPath(t, "hello-dev")
	unknown := mkPath(t, "unknown")
	mustRegister(t, db, []PathInfo{mkInfo(hello, libc, hello), mkInfo(gcc, libc), mkInfo(libc), mkInfo(drv, gcc), mkInfo(drv2)},
		map[storepath.Path]map[string]storepath.Path{drv: {"out": hello, "dev": dev}, drv2: {"out": hello}})
	mustCheck(t, db)

	for _, tt := range []struct {
		name string
		got  func() ([]storepath.Path, error)
		want []storepath.Path
	}{
		{"referrers of libc", func() ([]storepath.Path, error) { return db.Referrers(libc) }, []storepath.Path{gcc, hello}},
		{"referrers of hello (self)", func() ([]storepath.Path, error) { return db.Referrers(hello) }, []storepath.Path{hello}},
		{"referrers of unknown", func() ([]storepath.Path, error) { return db.Referrers(unknown) }, nil},
		{"derivers of hello", func() ([]storepath.Path, error) { return db.ValidDerivers(hello) }, []storepath.Path{drv, drv2}},
		{"derivers of dev (not valid)", func() ([]storepath.Path, error) { return db.ValidDerivers(dev) }, []storepath.Path{drv}},
		{"derivers of libc", func() ([]storepath.Path, error) { return db.ValidDerivers(libc) }, nil},
		{"valid among", func() ([]storepath.Path, error) { return db.ValidAmong([]storepath.Path{unknown, gcc, dev, libc}) }, []storepath.Path{gcc, libc}},
		{"all valid", db.AllValid, []storepath.Path{libc, gcc, hello, drv, drv2}},
		{"pending", db.Pending, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.got()
			if err != nil {
				t.Fatal(err)
			}
			if err := sameBases(got, tt.want); err != nil {
				t.Fatal(err)
			}
		})
	}

	outs, err := db.DerivationOutputs(drv)
	if want := map[string]storepath.Path{"out": hello, "dev": dev}; err != nil || !reflect.DeepEqual(outs, want) {
		t.Fatalf("DerivationOutputs = %v, %v; want %v", outs, err, want)
	}
	for _, tt := range []struct {
		hashPart string
		want     storepath.Path
		ok       bool
	}{
		{gcc.HashPart(), gcc, true},
		{dev.HashPart(), storepath.Path{}, false},
		{"short", storepath.Path{}, false},
	} {
		p, ok, err := db.ByHashPart(tt.hashPart)
		if err != nil || ok != tt.ok || p != tt.want {
			t.Errorf("ByHashPart(%s) = %v, %v, %v; want %v, %v", tt.hashPart, p.Base(), ok, err, tt.want.Base(), tt.ok)
		}
	}
	infos, err := db.PathInfos([]storepath.Path{hello, unknown, libc})
	if err != nil || len(infos) != 2 || infos[hello].References[1] != libc {
		t.Fatalf("PathInfos = %v, %v", infos, err)
	}
}

func TestDerivationOutputsReplace(t *testing.T) {
	db := newTestDB(t)
	drv, a, b, c := mkPath(t, "x.drv"), mkPath(t, "a"), mkPath(t, "b"), mkPath(t, "c")
	mustRegister(t, db, []PathInfo{mkInfo(drv)}, map[storepath.Path]map[string]storepath.Path{drv: {"out": a, "doc": c}})
	if err := db.SetDerivationOutputs(drv, map[string]storepath.Path{"out": b}); err != nil {
		t.Fatal(err)
	}
	outs, err := db.DerivationOutputs(drv)
	if want := map[string]storepath.Path{"out": b, "doc": c}; err != nil || !reflect.DeepEqual(outs, want) {
		t.Fatalf("outputs = %v, %v; want %v", outs, err, want)
	}
	if ds, _ := db.ValidDerivers(a); len(ds) != 0 {
		t.Fatalf("stale deriver of replaced output: %v", bases(ds))
	}
	if err := db.SetDerivationOutputs(mkPath(t, "gone.drv"), map[string]storepath.Path{"out": a}); !errors.Is(err, ErrNotValid) {
		t.Fatalf("outputs of an invalid drv: %v", err)
	}
	mustCheck(t, db)
}

func TestAddSignatures(t *testing.T) {
	db := newTestDB(t)
	p := mkPath(t, "signed")
	info := mkInfo(p)
	info.Sigs = []string{"k1:a"}
	mustRegister(t, db, []PathInfo{info}, nil)
	steps := []struct {
		add  []string
		want []string
	}{
		{[]string{"k2:b", "k1:a"}, []string{"k1:a", "k2:b"}},
		{[]string{"k0:z", "k0:z"}, []string{"k1:a", "k2:b", "k0:z"}},
		{nil, []string{"k1:a", "k2:b", "k0:z"}},
	}
	for i, s := range steps {
		if err := db.AddSignatures(p, s.add); err != nil {
			t.Fatal(err)
		}
		got, _, _ := db.PathInfo(p)
		if !reflect.DeepEqual(got.Sigs, s.want) {
			t.Fatalf("step %d: sigs %v, want %v", i, got.Sigs, s.want)
		}
	}
	if err := db.AddSignatures(mkPath(t, "nope"), []string{"k:x"}); !errors.Is(err, ErrNotValid) {
		t.Fatalf("sign invalid path: %v", err)
	}
}

func TestPendingThenValid(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, 0)
	a, b := mkPath(t, "a"), mkPath(t, "b")
	if err := db.MarkPending(a, b); err != nil {
		t.Fatal(err)
	}
	// A crash here: the monitor never called RegisterValid.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir, 0)
	pend, err := db.Pending()
	if err != nil || sameBases(pend, []storepath.Path{a, b}) != nil {
		t.Fatalf("Pending after reopen = %v, %v", bases(pend), err)
	}
	mustRegister(t, db, []PathInfo{mkInfo(a)}, nil)
	pend, _ = db.Pending()
	if err := sameBases(pend, []storepath.Path{b}); err != nil {
		t.Fatalf("after registering a: %v", err)
	}
	if err := db.ClearPending(b); err != nil {
		t.Fatal(err)
	}
	if pend, _ = db.Pending(); len(pend) != 0 {
		t.Fatalf("pending after ClearPending: %v", bases(pend))
	}
}

func TestRegisterRefusals(t *testing.T) {
	db := newTestDB(t)
	valid := mkPath(t, "valid")
	mustRegister(t, db, []PathInfo{mkInfo(valid)}, nil)
	a, b, c, missing := mkPath(t, "a"), mkPath(t, "b"), mkPath(t, "c"), mkPath(t, "missing")
	badHash := mkInfo(a)
	badHash.NarHash.Digest = badHash.NarHash.Digest[:5]
	tests := []struct {
		name  string
		infos []PathInfo
		outs  map[storepath.Path]map[string]storepath.Path
		want  error
	}{
		{"missing reference", []PathInfo{mkInfo(a, valid), mkInfo(b, a, missing)}, nil, ErrMissingReference},
		{"cycle", []PathInfo{mkInfo(a, b), mkInfo(b, c), mkInfo(c, a)}, nil, ErrCycle},
		{"twice", []PathInfo{mkInfo(a), mkInfo(a)}, nil, ErrBadInfo},
		{"bad hash", []PathInfo{badHash}, nil, ErrBadInfo},
		{"zero path", []PathInfo{{NarHash: badHash.NarHash}}, nil, ErrBadInfo},
		{"outputs of a drv outside the batch", []PathInfo{mkInfo(a)}, map[storepath.Path]map[string]storepath.Path{valid: {"out": b}}, ErrBadInfo},
		{"bad output name", []PathInfo{mkInfo(a)}, map[storepath.Path]map[string]storepath.Path{a: {"o/ut": b}}, ErrBadInfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := db.RegisterValid(tt.infos, tt.outs)
			if e := wantErr(err, tt.want); e != nil || err == nil {
				t.Fatalf("%v (err %v)", e, err)
			}
			if got, _ := db.ValidAmong([]storepath.Path{a, b, c}); len(got) != 0 {
				t.Fatalf("refused batch left valid paths %v", bases(got))
			}
		})
	}
	err := db.RegisterValid([]PathInfo{mkInfo(b, missing)}, nil)
	if want := testStoreDir.String(missing); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v does not name %s", err, want)
	}
}

func TestReRegisterChangesReferences(t *testing.T) {
	db := newTestDB(t)
	a, b, p := mkPath(t, "a"), mkPath(t, "b"), mkPath(t, "p")
	mustRegister(t, db, []PathInfo{mkInfo(a), mkInfo(b), mkInfo(p, a)}, nil)
	mustRegister(t, db, []PathInfo{mkInfo(p, b)}, nil)
	if rs, _ := db.Referrers(a); len(rs) != 0 {
		t.Fatalf("stale referrer of a: %v", bases(rs))
	}
	if rs, _ := db.Referrers(b); sameBases(rs, []storepath.Path{p}) != nil {
		t.Fatalf("referrers of b: %v", bases(rs))
	}
	mustCheck(t, db)
}

// TestLargeBatchSplit registers 5,000 paths in one call with a 1 MiB memtable
// (a transaction holds ~150 KiB), handed over referrers first.
func TestLargeBatchSplit(t *testing.T) {
	db := openTest(t, t.TempDir(), 1<<20)
	base := mkPath(t, "base")
	mustRegister(t, db, []PathInfo{mkInfo(base)}, nil)
	const n = 5000
	paths := make([]storepath.Path, n)
	for i := range paths {
		paths[i] = mkPath(t, fmt.Sprintf("p%d", i))
	}
	infos := make([]PathInfo, n)
	for i := range infos { // path i refers to base, i-1 and i/2: a deep chain
		refs := []storepath.Path{base}
		if i > 0 {
			refs = append(refs, paths[i-1], paths[i/2])
		}
		infos[n-1-i] = mkInfo(paths[i], refs...)
	}
	before := db.commits.Load()
	mustRegister(t, db, infos, nil)
	if commits := db.commits.Load() - before; commits < 2 {
		t.Fatalf("5,000 paths committed in %d transaction(s); expected a split", commits)
	}
	got, err := db.ValidAmong(paths)
	if err != nil || len(got) != n {
		t.Fatalf("%d of %d valid, err %v", len(got), n, err)
	}
	mustCheck(t, db)
	if err := db.Delete(append(paths, base)...); err != nil {
		t.Fatalf("Delete all: %v", err)
	}
	if all, _ := db.AllValid(); len(all) != 0 {
		t.Fatalf("%d paths left after deleting all", len(all))
	}
	mustCheck(t, db)
}

func TestDelete(t *testing.T) {
	type setup struct{ libc, app, tool, drv, out storepath.Path }
	tests := []struct {
		name    string
		del     func(s setup) []storepath.Path
		want    error
		remains func(s setup) []storepath.Path
	}{
		{"live referrer", func(s setup) []storepath.Path { return []storepath.Path{s.libc} }, ErrLiveReferrer,
			func(s setup) []storepath.Path { return []storepath.Path{s.libc, s.app, s.tool, s.drv} }},
		{"live referrer outside the set", func(s setup) []storepath.Path { return []storepath.Path{s.libc, s.app} }, ErrLiveReferrer,
			func(s setup) []storepath.Path { return []storepath.Path{s.libc, s.app, s.tool, s.drv} }},
		{"self reference", func(s setup) []storepath.Path { return []storepath.Path{s.tool} }, nil,
			func(s setup) []storepath.Path { return []storepath.Path{s.libc, s.app, s.drv} }},
		{"referrers with their references", func(s setup) []storepath.Path { return []storepath.Path{s.libc, s.app, s.tool} }, nil,
			func(s setup) []storepath.Path { return []storepath.Path{s.drv} }},
		{"derivation and invalid paths", func(s setup) []storepath.Path { return []storepath.Path{s.drv, s.out} }, nil,
			func(s setup) []storepath.Path { return []storepath.Path{s.libc, s.app, s.tool} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newTestDB(t)
			s := setup{mkPath(t, "libc"), mkPath(t, "app"), mkPath(t, "tool"), mkPath(t, "app.drv"), mkPath(t, "app-out")}
			mustRegister(t, db, []PathInfo{mkInfo(s.libc), mkInfo(s.app, s.libc), mkInfo(s.tool, s.libc, s.tool), mkInfo(s.drv)},
				map[storepath.Path]map[string]storepath.Path{s.drv: {"out": s.out}})
			err := db.Delete(tt.del(s)...)
			if e := wantErr(err, tt.want); e != nil {
				t.Fatal(e)
			}
			all, _ := db.AllValid()
			if err := sameBases(all, tt.remains(s)); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, db)
		})
	}
}

// DeleteMarkPending marks exactly the paths it makes invalid as pending,
// and marks nothing when it refuses.
func TestDeleteMarkPending(t *testing.T) {
	db := newTestDB(t)
	libc, app, drv, out, gone := mkPath(t, "libc"), mkPath(t, "app"), mkPath(t, "app.drv"), mkPath(t, "app-out"), mkPath(t, "gone")
	mustRegister(t, db, []PathInfo{mkInfo(libc), mkInfo(app, libc), mkInfo(drv)},
		map[storepath.Path]map[string]storepath.Path{drv: {"out": out}})
	if err := wantErr(db.DeleteMarkPending(libc), ErrLiveReferrer); err != nil {
		t.Fatal(err)
	}
	if pend, _ := db.Pending(); len(pend) != 0 {
		t.Fatalf("a refused delete marked %v", bases(pend))
	}
	if err := db.DeleteMarkPending(app, libc, drv, gone); err != nil {
		t.Fatal(err)
	}
	pend, err := db.Pending()
	if err != nil {
		t.Fatal(err)
	}
	if err := sameBases(pend, []storepath.Path{app, libc, drv}); err != nil {
		t.Fatal(err)
	}
	if all, _ := db.AllValid(); len(all) != 0 {
		t.Fatalf("still valid: %v", bases(all))
	}
	if outs, err := db.DerivationOutputs(drv); err != nil || len(outs) != 0 {
		t.Fatalf("outputs of a deleted derivation: %v %v", outs, err)
	}
	mustCheck(t, db)
}

func TestConcurrentRegister(t *testing.T) {
	db := newTestDB(t)
	root, pin := mkPath(t, "root"), mkPath(t, "pin")
	junk := make([]PathInfo, 20)
	for i := range junk {
		junk[i] = mkInfo(mkPath(t, fmt.Sprintf("junk%d", i)), root)
	}
	mustRegister(t, db, append([]PathInfo{mkInfo(root), mkInfo(pin, root)}, junk...), nil)
	var wg sync.WaitGroup
	errs := make(chan error, 17)
	for g := range 16 {
		wg.Go(func() {
			prev := root
			for i := range 20 {
				p := mkPath(t, fmt.Sprintf("g%d-%d", g, i))
				if err := db.RegisterValid([]PathInfo{mkInfo(p, prev, root)}, nil); err != nil {
					errs <- err
					return
				}
				prev = p
			}
		})
	}
	wg.Go(func() { // a collector running concurrently
		for _, j := range junk {
			if err := db.Delete(root); !errors.Is(err, ErrLiveReferrer) {
				errs <- fmt.Errorf("Delete(root) = %v", err)
				return
			}
			if err := db.Delete(j.Path); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if all, _ := db.AllValid(); len(all) != 16*20+2 {
		t.Fatalf("%d valid paths", len(all))
	}
	mustCheck(t, db)
}

func TestInstance(t *testing.T) {
	dir := t.TempDir() + "/db"
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := db.InstanceID()
	if cur, err := db.Current(); !cur || err != nil || len(id) != 32 {
		t.Fatalf("fresh: Current = %v, %v; id %q", cur, err, id)
	}
	db.Close()
	db = openTest(t, dir, 0)
	if db.InstanceID() != id {
		t.Fatalf("instance changed on reopen: %q → %q", id, db.InstanceID())
	}
	// A script wipes the state directory and a new daemon state appears.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if cur, err := db.Current(); cur || err != nil {
		t.Fatalf("after wipe: Current = %v, %v", cur, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if cur, err := db.Current(); cur || err != nil {
		t.Fatalf("after re-create: Current = %v, %v", cur, err)
	}
	db2 := openTest(t, t.TempDir(), 0)
	if db2.InstanceID() == id {
		t.Fatal("two databases share an instance id")
	}
}

func TestCorruptValue(t *testing.T) {
	p := mkPath(t, "victim")
	good := encodeInfo(&PathInfo{Path: p, NarHash: nixhash.Sum(nixhash.SHA256, nil), References: []storepath.Path{p}, Sigs: []string{"k:s"}})
	tests := []struct {
		name string
		val  []byte
	}{
		{"empty", []byte{}},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"version", append([]byte{9}, good[1:]...)},
		{"huge string", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"bad algo", append([]byte{1, 0, 77}, good[3:]...)},
		{"bad deriver", append([]byte{1, 3, 'a', 'b', 'c'}, good[2:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newTestDB(t)
			err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(validKey(p), tt.val) })
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := db.PathInfo(p); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("PathInfo = %v, want ErrCorrupt", err)
			}
			if err := db.Check(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Check = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestCheckFindsDanglingIndex(t *testing.T) {
	a, b := mkPath(t, "a"), mkPath(t, "b")
	tests := []struct {
		name string
		key  []byte
		val  []byte
	}{
		{"referrer from invalid path", referrerKey(a, b), nil},
		{"deriver without output", deriverKey(b, a), nil},
		{"output of invalid drv", drvOutKey(b, "out"), []byte(a.Base())},
		{"unknown key", []byte("z/whatever"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newTestDB(t)
			mustRegister(t, db, []PathInfo{mkInfo(a)}, nil)
			if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(tt.key, tt.val) }); err != nil {
				t.Fatal(err)
			}
			if err := db.Check(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Check = %v, want ErrCorrupt", err)
			}
		})
	}
}

func FuzzDecodeInfo(f *testing.F) {
	p, _ := storepath.ParseBase("00000000000000000000000000000000-x")
	f.Add(encodeInfo(&PathInfo{Path: p, NarHash: nixhash.Sum(nixhash.SHA256, nil), References: []storepath.Path{p}, Sigs: []string{"k:s"}, CA: "text:sha256:x"}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, val []byte) {
		info, err := decodeInfo(p, val)
		if err != nil {
			return
		}
		if again := encodeInfo(&info); string(again) != string(val) {
			t.Fatalf("decode/encode not canonical: %x → %x", val, again)
		}
	})
}

// TestEmptyLogAfterCrash: a crash between Badger creating a memtable WAL or a
// value-log file and sizing it leaves an empty <n>.mem or <n>.vlog, on which
// badger.Open alone fails (badger#2207; every Open creates the next .vlog);
// Open removes it and keeps every registered path. TestCrashDuringOpen gets
// there with real kills.
func TestEmptyLogAfterCrash(t *testing.T) {
	for _, name := range []string{"00001.mem", "00007.mem", "00099.mem", "000002.vlog", "000099.vlog"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			p := mkPath(t, "kept")
			mustRegister(t, db, []PathInfo{mkInfo(p)}, nil)
			db.Close()
			if err := os.WriteFile(dir+"/"+name, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			db = openTest(t, dir, 0)
			if ok, err := db.IsValid(p); !ok || err != nil {
				t.Fatalf("IsValid after reopen = %v, %v", ok, err)
			}
			mustRegister(t, db, []PathInfo{mkInfo(mkPath(t, "after"))}, nil)
			mustCheck(t, db)
		})
	}
}

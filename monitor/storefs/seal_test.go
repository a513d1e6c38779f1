package storefs

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"privnix/nix/nixbase32"
	"privnix/nix/nixhash"
)

func storeName(h nixhash.Hash, name string) string {
	return nixbase32.EncodeToString(h.Digest[:20]) + "-" + name
}

// normalTree has every kind of node a store path holds, and the metadata
// canonicalisation must clear.
var normalTree = []op{
	// A default ACL on the staging directory: out inherits an access ACL.
	{Op: "xattr", Path: ".", Name: "system.posix_acl_default", Data: posixACL(otherUID)},
	mkdir("out", 0o755),
	file("out/hello", "hello\n", 0o644),
	file("out/run.sh", "#!/bin/sh\necho hi\n", 0o755),
	file("out/owner-x-only", "x", 0o700),
	file("out/group-x-only", "x", 0o654),
	file("out/empty", "", 0o600),
	file("out/setuid", "s", 0o4755),
	file("out/setgid", "s", 0o2755),
	file("out/world-writable", "w", 0o666),
	mkdir("out/sub", 0o777),
	mkdir("out/sticky", 0o1777),
	mkdir("out/empty-dir", 0o700),
	mkdir("out/no-access", 0o000),
	symlink("/etc/passwd", "out/abs"),
	symlink("../hello", "out/sub/rel"),
	symlink("does/not/exist", "out/dangling"),
	symlink("/", "out/root"),
	file("out/sub/ünïcödé ✓", "unicode\n", 0o644),
	file("out/sub/日本語", "", 0o644),
	file("out/sub/.hidden", "h", 0o644),
	hardlink("out/hello", "out/sub/hello-link"),
	symlink("target", "out/sym-a"),
	hardlink("out/sym-a", "out/sym-b"),
	{Op: "xattr", Path: "out/hello", Name: "user.note", Data: []byte("x")},
	{Op: "xattr", Path: "out/sub", Name: "user.note", Data: []byte("y")},
	{Op: "xattr", Path: "out/run.sh", Name: "system.posix_acl_access", Data: posixACL(otherUID)},
	{Op: "xattr", Path: "out/sub", Name: "system.posix_acl_default", Data: posixACL(otherUID)},
	{Op: "chmod", Path: "out/no-access", Mode: 0},
}

var acceptedTrees = []struct {
	name string
	ops  []op
	flat nixhash.Algo
}{
	{"normal", normalTree, 0},
	{"flat sha256", []op{file("out", "flat contents\n", 0o644)}, nixhash.SHA256},
	{"flat sha1 executable", []op{file("out", "#!/bin/sh\n", 0o4755)}, nixhash.SHA1},
	{"empty file", []op{file("out", "", 0o600)}, 0},
	{"out is a symlink to /etc", []op{symlink("/etc", "out")}, 0},
	{"1000 levels", []op{{Op: "deep", Path: "out", N: 1000}}, 0},
	{"2500 files", []op{{Op: "many", Path: "out", N: 2500}}, 0},
}

// TestSealAccepted seals trees written by a real unprivileged uid and checks
// the NAR hash against Nix's, the canonical metadata of every inode, and where
// the inodes came from.
func TestSealAccepted(t *testing.T) {
	etcBefore := lstat(t, "/etc")
	for _, copyMode := range []bool{false, true} {
		for _, tc := range acceptedTrees {
			t.Run(fmt.Sprintf("%s/copy=%v", tc.name, copyMode), func(t *testing.T) {
				e := newEnv(t)
				st := e.newStaging(t)
				write(t, st, tc.ops...)
				out := filepath.Join(e.path(st), "out")
				before := walk(t, out)
				want := nixHash(t, out)
				size, _ := strconv.ParseUint(strings.TrimSpace(run(t, "sh", "-c", `nix-store --dump "$1" | wc -c`, "sh", out)), 10, 64)
				var content []byte
				if tc.flat != 0 {
					content = []byte(run(t, "cat", out))
				}

				res, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: copyMode, FlatAlgo: tc.flat})
				if err != nil {
					t.Fatal(err)
				}
				if got := res.NarHash.Nix32(); got != want {
					t.Fatalf("NarHash %s, Nix says %s", got, want)
				}
				if res.NarSize != size || res.FileCount != uint64(len(before)) {
					t.Errorf("NarSize %d FileCount %d, want %d and %d", res.NarSize, res.FileCount, size, len(before))
				}
				if tc.flat != 0 {
					if wantFlat := nixhash.Sum(tc.flat, content); !res.FlatHash.Equal(wantFlat) {
						t.Errorf("FlatHash %s, want %s", res.FlatHash, wantFlat)
					}
				} else if !res.FlatHash.IsZero() {
					t.Errorf("FlatHash %s without FlatAlgo", res.FlatHash)
				}
				if res.Found != nil {
					t.Errorf("Found %v without Candidates", res.Found)
				}

				name := storeName(res.NarHash, "t")
				if err := st.Commit(name); err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(e.store, name)
				if got := nixHash(t, p); got != want {
					t.Fatalf("committed tree hashes to %s, want %s", got, want)
				}
				after := walk(t, p)
				checkCanonical(t, before, after)
				for rel, a := range after {
					fresh := a.Ino != before[rel].Ino
					if fresh != copyMode {
						t.Errorf("%q: inode %d, writer's was %d (copy=%v)", rel, a.Ino, before[rel].Ino, copyMode)
					}
				}
				if err := st.Discard(); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Lstat(e.path(st)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("staging directory left after Discard: %v", err)
				}
				// Other processes may write in /etc: its owner and mode are what Seal could have changed.
				if got := lstat(t, "/etc"); got.Uid != etcBefore.Uid || got.Gid != etcBefore.Gid || got.Mode != etcBefore.Mode || got.Xattrs != etcBefore.Xattrs {
					t.Errorf("/etc changed: %+v, was %+v", got, etcBefore)
				}
			})
		}
	}
}

// checkCanonical: root:root, mode 0444/0555 (exec iff the owner could),
// directories 0555, mtime 1, no xattrs, same names as the writer's tree.
func checkCanonical(t *testing.T, before, after map[string]inode) {
	t.Helper()
	if len(before) != len(after) {
		t.Errorf("%d nodes sealed, the writer left %d", len(after), len(before))
	}
	for rel, a := range after {
		b, ok := before[rel]
		if !ok {
			t.Errorf("%q: not in the writer's tree", rel)
			continue
		}
		if a.Uid != 0 || a.Gid != 0 || a.Mtime != 1 || a.Xattrs != "" || a.Mode&unix.S_IFMT != b.Mode&unix.S_IFMT {
			t.Errorf("%q: %+v, want root:root, mtime 1, no xattrs, type of %+v", rel, a, b)
		}
		want := uint32(0o444)
		switch b.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			want = 0o555
		case unix.S_IFLNK:
			want = 0o777
		case unix.S_IFREG:
			if b.Mode&unix.S_IXUSR != 0 {
				want = 0o555
			}
		}
		if a.Mode&0o7777 != want {
			t.Errorf("%q: mode %#o, want %#o (writer's %#o)", rel, a.Mode&0o7777, want, b.Mode&0o7777)
		}
	}
}

// TestSealRefused: trees Seal must refuse, and what must stay untouched.
func TestSealRefused(t *testing.T) {
	type setup func(t *testing.T, e *env, st *Staging) (check func(t *testing.T))
	rootPlants := func(plant func(t *testing.T, out string)) setup {
		return func(t *testing.T, e *env, st *Staging) func(*testing.T) {
			plant(t, filepath.Join(e.path(st), "out", "open"))
			return nil
		}
	}
	cases := []struct {
		name   string
		ops    []op
		setup  setup
		opts   SealOptions
		reason error
	}{
		{name: "no out", ops: []op{file("other", "", 0o644)}, reason: ErrMissing},
		{name: "fifo", ops: []op{mkdir("out", 0o755), {Op: "fifo", Path: "out/fifo"}}, reason: ErrUnsupportedType},
		{name: "socket", ops: []op{mkdir("out", 0o755), {Op: "socket", Path: "out/sock"}}, reason: ErrUnsupportedType},
		{name: "fifo as out", ops: []op{{Op: "fifo", Path: "out"}}, reason: ErrUnsupportedType},
		{name: "device node", ops: []op{mkdir("out", 0o755), mkdir("out/open", 0o777)},
			setup: rootPlants(func(t *testing.T, dir string) {
				dev := filepath.Join(dir, "null")
				if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
					t.Fatal(err)
				}
				if err := os.Lchown(dev, writerUID, writerUID); err != nil {
					t.Fatal(err)
				}
			}), reason: ErrUnsupportedType},
		{name: "file of another uid", ops: []op{mkdir("out", 0o755), mkdir("out/open", 0o777)},
			setup: rootPlants(func(t *testing.T, dir string) {
				f := filepath.Join(dir, "theirs")
				if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Lchown(f, otherUID, otherUID); err != nil {
					t.Fatal(err)
				}
			}), reason: ErrOwner},
		{name: "symlink of another uid", ops: []op{mkdir("out", 0o755), mkdir("out/open", 0o777)},
			setup: rootPlants(func(t *testing.T, dir string) {
				if err := os.Symlink("/etc/shadow", filepath.Join(dir, "l")); err != nil {
					t.Fatal(err)
				}
			}), reason: ErrOwner},
		{name: "hard link to a root file outside", ops: []op{mkdir("out", 0o755), mkdir("out/open", 0o777)},
			setup: func(t *testing.T, e *env, st *Staging) func(*testing.T) {
				sentinel := filepath.Join(e.base, "sentinel")
				if err := os.WriteFile(sentinel, []byte("root's\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				was := lstat(t, sentinel)
				if err := os.Link(sentinel, filepath.Join(e.path(st), "out", "open", "shadow")); err != nil {
					t.Fatal(err)
				}
				return func(t *testing.T) {
					got := lstat(t, sentinel)
					got.Nlink = was.Nlink
					if got != was {
						t.Errorf("sentinel changed: %+v, was %+v", got, was)
					}
					if data, _ := os.ReadFile(sentinel); string(data) != "root's\n" {
						t.Errorf("sentinel now %q", data)
					}
				}
			}, reason: ErrOwner},
		{name: "hard link to the writer's file outside the tree",
			ops: []op{file("outside", "mine\n", 0o644), mkdir("out", 0o755), hardlink("outside", "out/in")},
			setup: func(t *testing.T, e *env, st *Staging) func(*testing.T) {
				outside := filepath.Join(e.path(st), "outside")
				was := lstat(t, outside)
				return func(t *testing.T) {
					if _, err := os.Lstat(outside); errors.Is(err, os.ErrNotExist) {
						return // Discard removed the staging directory, outside included
					}
					if got := lstat(t, outside); got != was {
						t.Errorf("the writer's file outside changed: %+v, was %+v", got, was)
					}
				}
			}, reason: ErrHardLink},
		{name: "hard-linked symlink with a link outside",
			ops:    []op{symlink("/", "outside"), mkdir("out", 0o755), hardlink("outside", "out/in")},
			reason: ErrHardLink},
		{name: "1100 levels", ops: []op{{Op: "deep", Path: "out", N: 1100}}, reason: ErrTooDeep},
		{name: "depth limit", ops: []op{{Op: "deep", Path: "out", N: 5}}, opts: SealOptions{MaxDepth: 5}, reason: ErrTooDeep},
		{name: "entry limit", ops: []op{{Op: "many", Path: "out", N: 30}}, opts: SealOptions{MaxEntries: 20}, reason: ErrTooManyEntries},
		{name: "flat but a directory", ops: []op{mkdir("out", 0o755)}, opts: SealOptions{FlatAlgo: nixhash.SHA256}, reason: ErrNotFlat},
		{name: "flat but a symlink", ops: []op{symlink("/etc/passwd", "out")}, opts: SealOptions{FlatAlgo: nixhash.SHA256}, reason: ErrNotFlat},
	}
	for _, copyMode := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/copy=%v", tc.name, copyMode), func(t *testing.T) {
				e := newEnv(t)
				st := e.newStaging(t)
				write(t, st, tc.ops...)
				var check func(*testing.T)
				if tc.setup != nil {
					check = tc.setup(t, e, st)
				}
				opts := tc.opts
				opts.WriterUID, opts.Copy = writerUID, copyMode
				_, err := st.Seal(opts)
				var re *RefusedError
				if !errors.Is(err, ErrRefused) || !errors.Is(err, tc.reason) || !errors.As(err, &re) {
					t.Fatalf("Seal: %v, want a refusal for %v", err, tc.reason)
				}
				if !strings.HasPrefix(re.Path, "out") {
					t.Errorf("refusal names %q", re.Path)
				}
				if check != nil {
					check(t)
				}
				if err := st.Commit(storeName(nixhash.Sum(nixhash.SHA256, nil), "x")); !errors.Is(err, ErrState) {
					t.Errorf("Commit after a refusal: %v", err)
				}
				if err := st.Discard(); err != nil {
					t.Fatal(err)
				}
				if check != nil {
					check(t)
				}
				if names, _ := os.ReadDir(e.store); len(names) != 0 {
					t.Errorf("store holds %v", names)
				}
			})
		}
	}
}

// TestSealTakesStagingBack: the writer loses the staging directory before the
// walk, and the default ACL it put there does not reach the copy.
func TestSealTakesStagingBack(t *testing.T) {
	e := newEnv(t)
	st := e.newStaging(t)
	write(t, st, op{Op: "xattr", Path: ".", Name: "system.posix_acl_default", Data: posixACL(otherUID)},
		file("out", "x", 0o644), file("junk", "", 0o644), mkdir(sealedName, 0o777))
	if got := lstat(t, e.path(st)); got.Uid != writerUID || got.Mode&0o777 != 0o700 {
		t.Fatalf("staging directory before Seal: %+v", got)
	}
	if _, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: true}); err != nil {
		t.Fatal(err)
	}
	got := lstat(t, e.path(st))
	if got.Uid != 0 || got.Gid != 0 || got.Mode&0o7777 != 0o700 || got.Xattrs != "" {
		t.Errorf("staging directory after Seal: %+v", got)
	}
	if got := lstat(t, filepath.Join(e.path(st), sealedName)); got.Xattrs != "" || got.Mode&0o7777 != 0o444 {
		t.Errorf("copy: %+v", got)
	}
	if _, err := os.Lstat(filepath.Join(e.path(st), "out")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the writer's out is still there after a copy: %v", err)
	}
}

// TestSealCandidates: hash parts are found in contents, names and symlink
// targets (the NAR stream), in both modes.
func TestSealCandidates(t *testing.T) {
	hp := func(s string) string {
		return nixbase32.EncodeToString(nixhash.Sum(nixhash.SHA256, []byte(s)).Digest[:20])
	}
	inFile, inName, inTarget, absent := hp("a"), hp("b"), hp("c"), hp("d")
	big := strings.Repeat("z", 70000) + "/nix/store/" + inFile + "-dep/bin"
	for _, copyMode := range []bool{false, true} {
		t.Run(fmt.Sprintf("copy=%v", copyMode), func(t *testing.T) {
			e := newEnv(t)
			st := e.newStaging(t)
			write(t, st, mkdir("out", 0o755), file("out/big", big, 0o644), file("out/"+inName+"-x", "", 0o644),
				symlink("/nix/store/"+inTarget+"-y", "out/l"))
			res, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: copyMode, Candidates: []string{absent, inTarget, inFile, inName}})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{inFile, inName, inTarget}
			if strings.Join(res.Found, " ") != strings.Join(sorted(want), " ") {
				t.Errorf("Found %v, want %v", res.Found, sorted(want))
			}
		})
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestSealFlatHash: the flat hash is of the file's contents, several MiB read
// in chunks, with and without Copy.
func TestSealFlatHash(t *testing.T) {
	for _, algo := range []nixhash.Algo{nixhash.SHA256, nixhash.SHA1} {
		for _, copyMode := range []bool{false, true} {
			e := newEnv(t)
			st := e.newStaging(t)
			write(t, st, op{Op: "big", Path: "out", N: 3<<20 + 7})
			data, err := os.ReadFile(filepath.Join(e.path(st), "out"))
			if err != nil {
				t.Fatal(err)
			}
			res, err := st.Seal(SealOptions{WriterUID: writerUID, FlatAlgo: algo, Copy: copyMode})
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			if algo == nixhash.SHA1 {
				s := sha1.Sum(data)
				want = s[:]
			} else {
				s := sha256.Sum256(data)
				want = s[:]
			}
			if !bytes.Equal(res.FlatHash.Digest, want) || res.FlatHash.Algo != algo || len(data) != 3<<20+7 {
				t.Errorf("%v copy=%v: FlatHash %s of %d bytes", algo, copyMode, res.FlatHash, len(data))
			}
			sealed, err := os.ReadFile(filepath.Join(e.path(st), st.SealedName()))
			if err != nil || !bytes.Equal(sealed, data) {
				t.Errorf("%v copy=%v: the sealed file differs from what the writer wrote (%v)", algo, copyMode, err)
			}
		}
	}
}

// TestStagingStates: Seal once, Commit only after Seal, nothing after Discard.
func TestStagingStates(t *testing.T) {
	e := newEnv(t)
	st := e.newStaging(t)
	name := storeName(nixhash.Sum(nixhash.SHA256, []byte("s")), "s")
	if err := st.Commit(name); !errors.Is(err, ErrState) {
		t.Errorf("Commit before Seal: %v", err)
	}
	write(t, st, file("out", "x", 0o644))
	if _, err := st.Seal(SealOptions{}); err == nil {
		t.Errorf("Seal with writer uid 0 accepted")
	}
	if _, err := st.Seal(SealOptions{WriterUID: writerUID}); !errors.Is(err, ErrState) {
		t.Errorf("Seal after a failed Seal: %v", err)
	}
	st2 := e.newStaging(t)
	write(t, st2, file("out", "x", 0o644))
	if _, err := st2.Seal(SealOptions{WriterUID: writerUID}); err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Seal(SealOptions{WriterUID: writerUID}); !errors.Is(err, ErrState) {
		t.Errorf("second Seal: %v", err)
	}
	if err := st2.Commit("not a store name"); err == nil {
		t.Errorf("Commit of an invalid name accepted")
	}
	if err := st2.Commit(name); err != nil {
		t.Fatal(err)
	}
	if err := st2.Commit(name); !errors.Is(err, ErrState) {
		t.Errorf("second Commit: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := st2.Discard(); err != nil {
			t.Errorf("Discard %d: %v", i, err)
		}
	}
	if _, err := e.s.NewStaging(0, 0); err == nil {
		t.Errorf("NewStaging for uid 0 accepted")
	}
}

// TestSealRace swaps entries at the two points of the walk where a writer
// that kept an fd on a directory could (raceHookForTest): nothing is
// followed, nothing outside changes, a replaced file is refused.
func TestSealRace(t *testing.T) {
	const swapToLink = `rm -rf "$1" && ln -s "$2" "$1" && chown -h "$3:$3" "$1"`
	cases := []struct {
		name     string
		step, at string
		script   string // sh -c script, "$1" the entry, "$2" the sentinel file, "$3" the writer uid
		target   string // "file" or "dir": what $2 names in the sentinel directory
		reason   error  // nil: sealed as what is there now
	}{
		{"file swapped for a symlink to a root file before it is read", "reopen", "out/f", swapToLink, "file", ErrChanged},
		{"file swapped for a fifo before it is read", "reopen", "out/f", `rm "$1" && mkfifo "$1" && chown "$3:$3" "$1"`, "file", ErrChanged},
		{"file swapped for a new file before it is read", "reopen", "out/f", `rm "$1" && echo new > "$1" && chown "$3:$3" "$1"`, "file", ErrChanged},
		{"file removed after its directory was listed", "open", "out/f", `rm "$1"`, "file", ErrChanged},
		{"directory swapped for a symlink to a root directory", "open", "out/d", swapToLink, "dir", nil},
		{"directory swapped for a symlink to a root file", "open", "out/d", swapToLink, "file", nil},
	}
	for _, copyMode := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/copy=%v", tc.name, copyMode), func(t *testing.T) {
				e := newEnv(t)
				sdir := filepath.Join(e.base, "sentinel-dir")
				if err := os.Mkdir(sdir, 0o755); err != nil {
					t.Fatal(err)
				}
				sfile := filepath.Join(sdir, "file")
				if err := os.WriteFile(sfile, []byte("keep\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				dirWas, fileWas := lstat(t, sdir), lstat(t, sfile)
				st := e.newStaging(t)
				write(t, st, mkdir("out", 0o755), mkdir("out/d", 0o755), file("out/d/x", "x", 0o644), file("out/f", "f\n", 0o644))
				target := sfile
				if tc.target == "dir" {
					target = sdir
				}
				swapped := false
				raceHookForTest = func(step, rel string) {
					if step == tc.step && rel == tc.at && !swapped {
						swapped = true
						run(t, "sh", "-c", tc.script, "sh", filepath.Join(e.path(st), rel), target, fmt.Sprint(writerUID))
					}
				}
				defer func() { raceHookForTest = nil }()
				res, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: copyMode})
				if !swapped {
					t.Fatal("the hook never ran")
				}
				if tc.reason != nil {
					if !errors.Is(err, tc.reason) {
						t.Fatalf("Seal: %v, want %v", err, tc.reason)
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					name := storeName(res.NarHash, "race")
					if err := st.Commit(name); err != nil {
						t.Fatal(err)
					}
					p := filepath.Join(e.store, name)
					if got := nixHash(t, p); got != res.NarHash.Nix32() {
						t.Errorf("sealed %s, the store object hashes to %s", res.NarHash.Nix32(), got)
					}
					if got := lstat(t, filepath.Join(p, "d")); got.Mode&unix.S_IFMT != unix.S_IFLNK || got.Uid != 0 {
						t.Errorf("out/d in the store: %+v", got)
					}
				}
				if got := lstat(t, sdir); got != dirWas {
					t.Errorf("sentinel directory changed: %+v, was %+v", got, dirWas)
				}
				if got := lstat(t, sfile); got != fileWas {
					t.Errorf("sentinel file changed: %+v, was %+v", got, fileWas)
				}
				if data, _ := os.ReadFile(sfile); string(data) != "keep\n" {
					t.Errorf("sentinel file holds %q", data)
				}
			})
		}
	}
}

// TestSealXattrsOnSymlinks: xattrs only root can set (trusted.*), on a file,
// a directory and a symlink, are removed (through listxattrat/removexattrat,
// or the pre-6.13 /proc path); on a hard-linked symlink they are refused
// without Copy (it is canonicalised at the end, through an O_PATH fd).
func TestSealXattrsOnSymlinks(t *testing.T) {
	for _, tc := range []struct {
		copyMode, onShared, proc bool
		reason                   error
	}{{false, false, false, nil}, {true, false, false, nil}, {false, true, false, ErrXattr}, {true, true, false, nil},
		{false, false, true, nil}, {false, true, true, ErrXattr}} {
		t.Run(fmt.Sprintf("copy=%v/shared=%v/proc=%v", tc.copyMode, tc.onShared, tc.proc), func(t *testing.T) {
			procXattrsForTest = tc.proc // /proc/self/fd/<dir>/<name> instead of listxattrat/removexattrat
			defer func() { procXattrsForTest = false }()
			e := newEnv(t)
			st := e.newStaging(t)
			write(t, st, mkdir("out", 0o755), file("out/f", "f", 0o644), mkdir("out/d", 0o755),
				symlink("/etc/passwd", "out/l"), symlink("x", "out/a"), hardlink("out/a", "out/b"))
			out := filepath.Join(e.path(st), "out")
			targets := []string{"f", "d", "l"}
			if tc.onShared {
				targets = append(targets, "a")
			}
			for _, n := range targets {
				if err := unix.Lsetxattr(filepath.Join(out, n), "trusted.storefs-test", []byte("1"), 0); err != nil {
					t.Fatal(err)
				}
			}
			if got := lstat(t, filepath.Join(out, "l")); got.Xattrs == "" {
				t.Fatal("the symlink has no xattr to remove")
			}
			res, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: tc.copyMode})
			if tc.reason != nil {
				if !errors.Is(err, tc.reason) {
					t.Fatalf("Seal: %v, want %v", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			name := storeName(res.NarHash, "x")
			if err := st.Commit(name); err != nil {
				t.Fatal(err)
			}
			for rel, in := range walk(t, filepath.Join(e.store, name)) {
				if in.Xattrs != "" || in.Uid != 0 || in.Mtime != 1 {
					t.Errorf("%q: %+v", rel, in)
				}
			}
		})
	}
}

// TestSealSparse: a sparse file's copy stays sparse, and MaxNarSize stops a
// huge sparse file before it is read.
func TestSealSparse(t *testing.T) {
	const size = 64 << 20
	e := newEnv(t)
	st := e.newStaging(t)
	write(t, st, op{Op: "sparse", Path: "out", N: size})
	want := nixHash(t, filepath.Join(e.path(st), "out"))
	res, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: true, MaxNarSize: size + 200})
	if err != nil {
		t.Fatal(err)
	}
	if res.NarHash.Nix32() != want {
		t.Errorf("NarHash %s, Nix says %s", res.NarHash.Nix32(), want)
	}
	var s unix.Stat_t
	if err := unix.Lstat(filepath.Join(e.path(st), st.SealedName()), &s); err != nil {
		t.Fatal(err)
	}
	if s.Size != size || s.Blocks*512 > 256<<10 {
		t.Errorf("copy: %d bytes in %d blocks of 512", s.Size, s.Blocks)
	}
	name := storeName(res.NarHash, "sparse")
	if err := st.Commit(name); err != nil {
		t.Fatal(err)
	}
	if got := nixHash(t, filepath.Join(e.store, name)); got != want {
		t.Errorf("the copy hashes to %s, the original to %s", got, want)
	}

	for _, tc := range []struct {
		name   string
		ops    []op
		max    uint64
		reason error
	}{
		{"1 TiB sparse file", []op{{Op: "sparse", Path: "out", N: 1 << 40}}, 1 << 20, ErrTooLarge},
		{"tree over the limit", []op{{Op: "many", Path: "out", N: 100}}, 4096, ErrTooLarge},
		{"exactly at the limit", []op{file("out", "12345", 0o644)}, 120, nil},
		{"one byte over the limit", []op{file("out", "12345", 0o644)}, 119, ErrTooLarge},
	} {
		for _, copyMode := range []bool{false, true} {
			st := e.newStaging(t)
			write(t, st, tc.ops...)
			res, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: copyMode, MaxNarSize: tc.max})
			if tc.reason == nil {
				if err != nil || res.NarSize != tc.max {
					t.Errorf("%s copy=%v: %v, NarSize %d", tc.name, copyMode, err, res.NarSize)
				}
			} else if !errors.Is(err, tc.reason) {
				t.Errorf("%s copy=%v: %v, want %v", tc.name, copyMode, err, tc.reason)
			}
		}
	}
}

// TestSealLiveWriter: a writer that kept an fd on out swaps a directory and
// a file with symlinks to a root-owned sentinel (renameat2 RENAME_EXCHANGE)
// for as long as Seal runs — the attack Copy exists for, also run against a
// take-over. Whatever Seal decides, nothing outside changes, and what it
// seals is root's, canonical and made of nothing but the tree.
func TestSealLiveWriter(t *testing.T) {
	e := newEnv(t)
	sdir := filepath.Join(e.base, "sentinel-dir")
	if err := os.Mkdir(sdir, 0o755); err != nil {
		t.Fatal(err)
	}
	sfile := filepath.Join(sdir, "file")
	if err := os.WriteFile(sfile, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirWas, fileWas := lstat(t, sdir), lstat(t, sfile)
	outcomes, copies := map[string]int{}, map[string]bool{}
	for i := 0; i < 30; i++ {
		copyMode := i%2 == 1
		st := e.newStaging(t)
		stop := startWriter(t, st, op{Op: "churn", Target: sdir})
		res, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: copyMode})
		stop()
		var re *RefusedError
		switch {
		case errors.As(err, &re):
			outcomes["refused: "+re.Reason.Error()]++
		case err != nil:
			t.Fatalf("copy=%v: %v", copyMode, err)
		default:
			outcomes["sealed"]++
			if copyMode {
				copies[res.NarHash.Nix32()] = true
			}
			name := storeName(res.NarHash, fmt.Sprint("live", i))
			if err := st.Commit(name); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(e.store, name)
			if got := nixHash(t, p); got != res.NarHash.Nix32() {
				t.Errorf("copy=%v: sealed %s, the store object hashes to %s", copyMode, res.NarHash.Nix32(), got)
			}
			for rel, in := range walk(t, p) {
				if in.Uid != 0 || in.Mtime != 1 || in.Ino == fileWas.Ino || in.Ino == dirWas.Ino {
					t.Errorf("copy=%v: %q is %+v", copyMode, rel, in)
				}
			}
		}
		if err := st.Discard(); err != nil {
			t.Fatal(err)
		}
		if got := lstat(t, sdir); got != dirWas {
			t.Fatalf("sentinel directory changed: %+v, was %+v", got, dirWas)
		}
		if got := lstat(t, sfile); got != fileWas {
			t.Fatalf("sentinel file changed: %+v, was %+v", got, fileWas)
		}
	}
	if names := list(t, sdir); len(names) != 1 {
		t.Errorf("sentinel directory holds %v", names)
	}
	t.Logf("outcomes: %v; %d different trees sealed by copy", outcomes, len(copies))
	if len(copies) < 2 {
		t.Errorf("every copy sealed the same tree: the writer never raced the walk")
	}
}

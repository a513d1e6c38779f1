package storefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"privnix/nix/nixhash"
)

func TestOpen(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(t *testing.T, base string) (store, staging string)
		refuse string // "" = accepted
	}{
		{"fresh staging root", func(t *testing.T, base string) (string, string) {
			return mkdirAt(t, base, "store", 0o755, 0), filepath.Join(base, "staging")
		}, ""},
		{"existing staging root", func(t *testing.T, base string) (string, string) {
			return mkdirAt(t, base, "store", 0o755, 0), mkdirAt(t, base, "staging", 0o700, 0)
		}, ""},
		{"store is a symlink", func(t *testing.T, base string) (string, string) {
			mkdirAt(t, base, "real", 0o755, 0)
			symlinkAt(t, "real", filepath.Join(base, "store"))
			return filepath.Join(base, "store"), filepath.Join(base, "staging")
		}, "symlink"},
		{"store group-writable", func(t *testing.T, base string) (string, string) {
			return mkdirAt(t, base, "store", 0o775, 0), filepath.Join(base, "staging")
		}, "writable by group or others"},
		{"store world-writable sticky (Nix's 1775 without the nixbld group)", func(t *testing.T, base string) (string, string) {
			return mkdirAt(t, base, "store", 0o1777, 0), filepath.Join(base, "staging")
		}, "writable by group or others"},
		{"store owned by another uid", func(t *testing.T, base string) (string, string) {
			return mkdirAt(t, base, "store", 0o755, otherUID), filepath.Join(base, "staging")
		}, "owned by uid"},
		{"store is a file", func(t *testing.T, base string) (string, string) {
			f := filepath.Join(base, "store")
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return f, filepath.Join(base, "staging")
		}, "not a directory"},
		{"staging root is a symlink", func(t *testing.T, base string) (string, string) {
			mkdirAt(t, base, "elsewhere", 0o700, 0)
			symlinkAt(t, "elsewhere", filepath.Join(base, "staging"))
			return mkdirAt(t, base, "store", 0o755, 0), filepath.Join(base, "staging")
		}, "symlink"},
		{"staging root mode 0755", func(t *testing.T, base string) (string, string) {
			return mkdirAt(t, base, "store", 0o755, 0), mkdirAt(t, base, "staging", 0o755, 0)
		}, "mode"},
		{"staging root owned by another uid", func(t *testing.T, base string) (string, string) {
			return mkdirAt(t, base, "store", 0o755, 0), mkdirAt(t, base, "staging", 0o700, otherUID)
		}, "owner uid"},
		{"staging root in a world-writable directory", func(t *testing.T, base string) (string, string) {
			return mkdirAt(t, base, "store", 0o755, 0), filepath.Join(mkdirAt(t, base, "tmp", 0o1777, 0), "staging")
		}, "writable by group or others"},
		{"relative path", func(t *testing.T, base string) (string, string) {
			return "store", filepath.Join(base, "staging")
		}, "absolute"},
		{"staging root on another mount", func(t *testing.T, base string) (string, string) {
			mnt := mkdirAt(t, base, "mnt", 0o755, 0)
			if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "mode=0755"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
			return mkdirAt(t, base, "store", 0o755, 0), filepath.Join(mnt, "staging")
		}, "not on the store's mount"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store, staging := tc.setup(t, tmpDir(t))
			s, err := Open(store, staging)
			if tc.refuse != "" {
				if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), tc.refuse) {
					t.Fatalf("Open: %v, want ErrUnsafe saying %q", err, tc.refuse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := lstat(t, staging); got.Uid != 0 || got.Gid != 0 || got.Mode != unix.S_IFDIR|0o700 {
				t.Errorf("staging root %+v", got)
			}
		})
	}
}

func mkdirAt(t *testing.T, base, name string, mode uint32, uid int) string {
	t.Helper()
	p := filepath.Join(base, name)
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
	return p
}

func symlinkAt(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func TestNewStaging(t *testing.T) {
	e := newEnv(t)
	a, b := e.newStaging(t), e.newStaging(t)
	if a.ID() == b.ID() || len(a.ID()) != 32 {
		t.Errorf("ids %q %q", a.ID(), b.ID())
	}
	got := lstat(t, e.path(a))
	if got.Uid != writerUID || got.Gid != writerUID || got.Mode != unix.S_IFDIR|0o700 {
		t.Errorf("staging directory %+v", got)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(a.Dir().Fd()), &st); err != nil || st.Ino != got.Ino {
		t.Errorf("Dir() is not the staging directory: %v", err)
	}
	// The writer can use it through the fd, though it cannot reach it by path.
	write(t, a, file("out", "x", 0o644))
	if got := lstat(t, filepath.Join(e.path(a), "out")); got.Uid != writerUID {
		t.Errorf("out %+v", got)
	}
}

// TestCommit: the sealed tree becomes the store object; an existing name
// (even a symlink to /) is never replaced or followed.
func TestCommit(t *testing.T) {
	e := newEnv(t)
	seal := func(ops ...op) (*Staging, Sealed) {
		st := e.newStaging(t)
		write(t, st, ops...)
		res, err := st.Seal(SealOptions{WriterUID: writerUID})
		if err != nil {
			t.Fatal(err)
		}
		return st, res
	}
	tree := []op{mkdir("out", 0o755), file("out/f", "f\n", 0o644)}
	st1, res := seal(tree...)
	name := storeName(res.NarHash, "pkg")
	if ok, err := e.s.Exists(name); ok || err != nil {
		t.Fatalf("Exists before Commit: %v %v", ok, err)
	}
	if err := st1.Commit(name); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.s.Exists(name); !ok || err != nil {
		t.Fatalf("Exists after Commit: %v %v", ok, err)
	}
	if got := lstat(t, filepath.Join(e.store, name)); got.Mode != unix.S_IFDIR|0o555 || got.Mtime != 1 {
		t.Errorf("committed %+v", got)
	}

	st2, _ := seal(tree...)
	if err := st2.Commit(name); !errors.Is(err, ErrExists) {
		t.Fatalf("second Commit: %v, want ErrExists", err)
	}
	// Still sealed and intact in the staging directory, and committable elsewhere.
	if got := lstat(t, filepath.Join(e.path(st2), "out")); got.Mode != unix.S_IFDIR|0o555 || got.Uid != 0 || got.Mtime != 1 {
		t.Errorf("sealed tree after ErrExists %+v", got)
	}

	rootBefore := lstat(t, "/")
	trap := storeName(nixhash.Sum(nixhash.SHA256, []byte("trap")), "trap")
	if err := os.Symlink("/", filepath.Join(e.store, trap)); err != nil {
		t.Fatal(err)
	}
	if err := st2.Commit(trap); !errors.Is(err, ErrExists) {
		t.Fatalf("Commit onto a symlink: %v, want ErrExists", err)
	}
	if got := lstat(t, "/"); got.Uid != rootBefore.Uid || got.Mode != rootBefore.Mode {
		t.Errorf("/ changed: %+v", got)
	}
	if ok, _ := e.s.Exists("no such"); ok {
		t.Errorf("Exists of a missing name")
	}
	if _, err := e.s.Exists("../x"); err == nil {
		t.Errorf("Exists accepted a path")
	}
}

// hostileTree is what a writer may leave to be discarded.
var hostileTree = []op{
	mkdir("out", 0o755),
	symlink("/", "out/root"),
	symlink("/etc/passwd", "out/passwd"),
	symlink("/", "beside-out"),
	mkdir("out/locked", 0o755),
	file("out/locked/f", "f", 0o000),
	symlink("/etc", "out/locked/etc"),
	{Op: "chmod", Path: "out/locked", Mode: 0o000},
	mkdir("out/sticky", 0o1777),
	file("out/sticky/f", "x", 0o4755),
	{Op: "fifo", Path: "out/fifo"},
	{Op: "socket", Path: "out/sock"},
	{Op: "deep", Path: "out/deep", N: 300},
	{Op: "many", Path: "out/many", N: 1500},
	{Op: "xattr", Path: "out/sticky", Name: "user.x", Data: []byte("1")},
	mkdir("out/plant", 0o777),
}

// sentinel is a root-owned file outside every tree.
func sentinel(t *testing.T, dir string) (path string, check func()) {
	p := filepath.Join(dir, "sentinel")
	if err := os.WriteFile(p, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	was := lstat(t, p)
	passwd, root := lstat(t, "/etc/passwd"), lstat(t, "/")
	return p, func() {
		t.Helper()
		got := lstat(t, p)
		if got.Nlink = was.Nlink; got != was {
			t.Errorf("sentinel changed: %+v, was %+v", got, was)
		}
		if data, _ := os.ReadFile(p); string(data) != "keep\n" {
			t.Errorf("sentinel holds %q", data)
		}
		// Others may rewrite /etc/passwd (useradd): owner and mode are what a
		// followed symlink could have changed; / must still have entries.
		if got := lstat(t, "/etc/passwd"); got.Uid != passwd.Uid || got.Mode != passwd.Mode || got.Size == 0 {
			t.Errorf("/etc/passwd changed: %+v, was %+v", got, passwd)
		}
		if got := lstat(t, "/"); got.Uid != root.Uid || got.Mode != root.Mode {
			t.Errorf("/ changed: %+v, was %+v", got, root)
		}
		if names, err := os.ReadDir("/etc"); err != nil || len(names) == 0 {
			t.Errorf("/etc: %v", err)
		}
	}
}

// TestDiscardHostile: discarding any shape touches nothing outside, whether
// the writer was interrupted before Seal or Seal refused the tree.
func TestDiscardHostile(t *testing.T) {
	for _, sealFirst := range []bool{false, true} {
		e := newEnv(t)
		sent, check := sentinel(t, e.base)
		st := e.newStaging(t)
		write(t, st, hostileTree...)
		if err := os.Link(sent, filepath.Join(e.path(st), "out", "plant", "hardlink")); err != nil {
			t.Fatal(err)
		}
		if sealFirst {
			if _, err := st.Seal(SealOptions{WriterUID: writerUID}); !errors.Is(err, ErrRefused) {
				t.Fatalf("Seal of a hostile tree: %v", err)
			}
		}
		if err := st.Discard(); err != nil {
			t.Fatal(err)
		}
		check()
		if names := list(t, e.staging); len(names) != 0 {
			t.Errorf("staging root holds %v", names)
		}
	}
}

func list(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// TestRemoveAllDeep: a tree far deeper than the fds a removal holds.
func TestRemoveAllDeep(t *testing.T) {
	e := newEnv(t)
	st := e.newStaging(t)
	write(t, st, op{Op: "deep", Path: "out", N: 3000})
	if err := st.Discard(); err != nil {
		t.Fatal(err)
	}
	if names := list(t, e.staging); len(names) != 0 {
		t.Errorf("staging root holds %v", names)
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t)
	_, check := sentinel(t, e.base)
	names := map[string][]op{
		"dir":     {mkdir("out", 0o755), file("out/f", "x", 0o755), symlink("/", "out/root"), mkdir("out/d", 0o755)},
		"file":    {file("out", "x", 0o644)},
		"symlink": {symlink("/etc/passwd", "out")},
	}
	for kind, ops := range names {
		st := e.newStaging(t)
		write(t, st, ops...)
		res, err := st.Seal(SealOptions{WriterUID: writerUID})
		if err != nil {
			t.Fatal(err)
		}
		name := storeName(res.NarHash, kind)
		if err := st.Commit(name); err != nil {
			t.Fatal(err)
		}
		if err := st.Discard(); err != nil {
			t.Fatal(err)
		}
		if err := e.s.Delete(name); err != nil {
			t.Fatalf("Delete %s: %v", kind, err)
		}
		if ok, err := e.s.Exists(name); ok || err != nil {
			t.Errorf("%s still exists: %v", kind, err)
		}
	}
	if err := e.s.Delete(storeName(nixhash.Sum(nixhash.SHA256, nil), "missing")); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Delete of a missing path: %v", err)
	}
	if err := e.s.Delete(".privnix-staging"); err == nil {
		t.Errorf("Delete accepted a name that is not a store path")
	}
	if err := e.s.Delete("../staging"); err == nil {
		t.Errorf("Delete accepted a path")
	}
	if got := list(t, e.staging); len(got) != 0 {
		t.Errorf("staging root holds %v", got)
	}
	if got := list(t, e.store); len(got) != 0 {
		t.Errorf("store holds %v", got)
	}
	check()
}

// TestRemoveStaging: start-up removes every leftover, hostile or not.
func TestRemoveStaging(t *testing.T) {
	e := newEnv(t)
	_, check := sentinel(t, e.base)
	for i := 0; i < 3; i++ {
		st, err := e.s.NewStaging(writerUID, writerUID)
		if err != nil {
			t.Fatal(err)
		}
		write(t, st, hostileTree...)
		if i == 1 {
			st.Seal(SealOptions{WriterUID: writerUID})
		}
		st.Dir().Close() // a crash: the Staging is forgotten
	}
	if err := os.WriteFile(filepath.Join(e.staging, "del-x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := list(t, e.staging); len(got) != 4 {
		t.Fatalf("staging root holds %v", got)
	}
	if err := e.s.RemoveStaging(); err != nil {
		t.Fatal(err)
	}
	if got := list(t, e.staging); len(got) != 0 {
		t.Errorf("staging root holds %v", got)
	}
	check()
}

// TestOpenBeneath: the walk's only lookup never goes through a symlink, up
// and out, or into another mount: a directory swapped for a symlink mid-walk
// makes the open fail instead of leading root elsewhere.
func TestOpenBeneath(t *testing.T) {
	e := newEnv(t)
	st := e.newStaging(t)
	write(t, st, mkdir("out", 0o755), mkdir("out/d", 0o755), file("out/d/f", "x", 0o644),
		symlink("d", "out/swapped"), symlink("/etc", "out/etc"), mkdir("out/mnt", 0o755))
	mnt := filepath.Join(e.path(st), "out", "mnt")
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	dir := int(st.Dir().Fd())
	cases := []struct {
		name  string
		flags int
		want  error
	}{
		{"out/d/f", unix.O_RDONLY, nil},
		{"out/swapped/f", unix.O_RDONLY, unix.ELOOP},
		{"out/swapped", unix.O_RDONLY | unix.O_DIRECTORY, unix.ENOTDIR},
		{"out/swapped", unix.O_RDONLY, unix.ELOOP},
		{"out/etc/passwd", unix.O_RDONLY, unix.ELOOP},
		{"out/etc", unix.O_PATH, nil}, // the link itself
		{"out/../../x", unix.O_PATH, unix.EXDEV},
		{"/etc/passwd", unix.O_RDONLY, unix.EXDEV},
		{"/proc/self/root/etc", unix.O_PATH, unix.EXDEV},
		{"out/mnt", unix.O_PATH, unix.EXDEV},
	}
	for _, tc := range cases {
		fd, err := openBeneath(dir, tc.name, tc.flags)
		if err != tc.want {
			t.Errorf("openBeneath(%q): %v, want %v", tc.name, err, tc.want)
		}
		if err == nil {
			unix.Close(fd)
		}
	}
	// Seal refuses to cross the mount rather than follow it.
	if _, err := st.Seal(SealOptions{WriterUID: writerUID}); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("Seal across a mount: %v", err)
	}
}

// TestDeleteMany removes files, symlinks and directories in one call and
// counts the bytes as nix-daemon does: the st_size of every non-directory
// with a single link when it is removed (of two links to one inode inside a
// tree, the second counts).
func TestDeleteMany(t *testing.T) {
	e := newEnv(t)
	_, check := sentinel(t, e.base)
	trees := []struct {
		kind  string
		ops   []op
		freed uint64
	}{
		{"dir", []op{mkdir("out", 0o755), file("out/f", "hello", 0o755), symlink("/", "out/root"), mkdir("out/d", 0o755),
			file("out/d/g", "abc", 0o644), hardlink("out/d/g", "out/h")}, 5 + 1 + 3},
		{"file", []op{file("out", "seven b", 0o644)}, 7},
		{"symlink", []op{symlink("/etc/passwd", "out")}, 11},
	}
	var names []string
	for _, tr := range trees {
		st := e.newStaging(t)
		write(t, st, tr.ops...)
		res, err := st.Seal(SealOptions{WriterUID: writerUID})
		if err != nil {
			t.Fatal(err)
		}
		name := storeName(res.NarHash, tr.kind)
		if err := st.Commit(name); err != nil {
			t.Fatal(err)
		}
		st.Discard()
		names = append(names, name)
	}
	names = append(names, storeName(nixhash.Sum(nixhash.SHA256, nil), "missing"), ".privnix-staging", "../staging")
	freed, errs := e.s.DeleteMany(names)
	for i, tr := range trees {
		if errs[i] != nil || freed[i] != tr.freed {
			t.Errorf("%s: freed %d (want %d), %v", tr.kind, freed[i], tr.freed, errs[i])
		}
	}
	if errs[3] != nil || freed[3] != 0 {
		t.Errorf("a missing path: %d, %v", freed[3], errs[3])
	}
	if errs[4] == nil || errs[5] == nil {
		t.Errorf("DeleteMany accepted names that are not store paths: %v, %v", errs[4], errs[5])
	}
	if got := list(t, e.staging); len(got) != 0 {
		t.Errorf("staging root holds %v", got)
	}
	if got := list(t, e.store); len(got) != 0 {
		t.Errorf("store holds %v", got)
	}
	check()
}

// TestDiscardAfterCommit: after a Commit, Discard removes the staging
// directory whether the writer left nothing but out (one rmdir) or more
// beside it.
func TestDiscardAfterCommit(t *testing.T) {
	e := newEnv(t)
	for i, extra := range [][]op{nil, {file("beside", "x", 0o644), mkdir("dir", 0o755), symlink("/", "dir/link")}} {
		st := e.newStaging(t)
		write(t, st, append([]op{file("out", fmt.Sprint("out ", i), 0o644)}, extra...)...)
		res, err := st.Seal(SealOptions{WriterUID: writerUID})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Commit(storeName(res.NarHash, fmt.Sprint("after-commit-", i))); err != nil {
			t.Fatal(err)
		}
		if err := st.Discard(); err != nil {
			t.Fatal(err)
		}
		if names := list(t, e.staging); len(names) != 0 {
			t.Errorf("with %d entries beside out, the staging root holds %v", len(extra), names)
		}
	}
}

// Package storefs makes every change the root monitor makes to the store's
// filesystem, through held directory fds: it never follows a symlink and never
// writes beneath a directory an unprivileged uid can still write to.
//
// Layout (DESIGN.md, "Sealing"):
//
//	<store>/<name>                    committed store objects, root:root 0555/0444
//	<stagingRoot>/                    root:root 0700, on the store's mount
//	<stagingRoot>/<id>/               one Staging: writer uid:gid 0700 until Seal or Discard
//	<stagingRoot>/<id>/out            what the writer left (taken over or copied by Seal)
//	<stagingRoot>/<id>/sealed         Seal's copy (SealOptions.Copy)
//	<stagingRoot>/del-<id>/x          Delete's trash: a store object on its way out
//
// Every lookup is openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV and O_NOFOLLOW; every change is made on
// an fd that was typed by fstat, or fd-relative to a directory that root owns
// with mode 0700. The monitor runs without CAP_DAC_OVERRIDE (see
// systemd/privnix-daemon.service), so the package chowns a directory to root and
// makes it 0700 before it writes in it, and makes a directory writable by root
// before moving it to another parent (rename changes its "..").
package storefs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"privnix/nix/storepath"
)

// Errors. A refused tree gives a *RefusedError, which matches ErrRefused and
// its reason (one of the Err* reasons below) with errors.Is.
var (
	ErrUnsafe  = errors.New("unsafe directory")           // Open: the store or staging root is not safe to use
	ErrExists  = errors.New("store object exists")        // Commit: the name was taken first (check its validity)
	ErrState   = errors.New("staging in the wrong state") // Seal twice, Commit before Seal, use after Discard
	ErrRefused = errors.New("tree refused")               // Seal: what the writer left is not acceptable

	ErrUnsupportedType = errors.New("unsupported file type")         // fifo, socket, device
	ErrOwner           = errors.New("not owned by the writer")       // any inode owned by another uid
	ErrHardLink        = errors.New("hard link to outside the tree") // an inode with links the walk did not see
	ErrTooDeep         = errors.New("directory nesting too deep")    // more than MaxDepth levels
	ErrTooManyEntries  = errors.New("too many entries")              // more than MaxEntries nodes
	ErrName            = errors.New("invalid entry name")            // a name a NAR cannot hold
	ErrChanged         = errors.New("file changed while sealing")    // replaced or shrunk during the walk
	ErrNotFlat         = errors.New("not a regular file")            // FlatAlgo set and out is not a regular file
	ErrXattr           = errors.New("extended attributes on a hard-linked symlink")
	ErrMissing         = errors.New("missing")   // no out
	ErrTooLarge        = errors.New("too large") // NAR larger than SealOptions.MaxNarSize
)

// RefusedError says why Seal refused a tree. Path is relative to the staging
// directory ("out", "out/bin/x") and is what the writer chose: log it escaped.
type RefusedError struct {
	Path   string
	Reason error
	Detail string
}

func (e *RefusedError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("storefs: %q refused: %v", e.Path, e.Reason)
	}
	return fmt.Sprintf("storefs: %q refused: %v (%s)", e.Path, e.Reason, e.Detail)
}

// Unwrap lets errors.Is match both ErrRefused and the reason.
func (e *RefusedError) Unwrap() []error { return []error{ErrRefused, e.Reason} }

func refuse(path string, reason error, detail string) error {
	return &RefusedError{Path: path, Reason: reason, Detail: detail}
}

// Store holds the store directory and the staging root open. It is safe for
// concurrent use; Close it last.
type Store struct {
	storeFd     int // O_RDONLY|O_DIRECTORY: renameat2 target, syncfs
	stagingFd   int // O_RDONLY|O_DIRECTORY, owner uid 0700
	storeDir    string
	stagingRoot string
}

// Open opens storeDir and stagingRoot (creating the latter's last component
// uid:gid 0700 if it is missing). It refuses, wrapping ErrUnsafe and saying
// why: a store that is a symlink, not owned by the daemon's euid, or writable
// by group or others; a staging root that is a symlink, not owned by the
// daemon or not mode 0700, or whose parent is writable by group or others;
// and a staging root on another mount than the store (renameat2 could not
// move trees into the store).
func Open(storeDir, stagingRoot string) (*Store, error) {
	for _, p := range []string{storeDir, stagingRoot} {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("storefs: %q: %w: not an absolute, clean path", p, ErrUnsafe)
		}
	}
	s := &Store{storeFd: -1, stagingFd: -1, storeDir: storeDir, stagingRoot: stagingRoot}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	fd, err := unix.Open(storeDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openErr("store directory", storeDir, err)
	}
	s.storeFd = fd
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("storefs: stat %s: %w", storeDir, err)
	}
	if int(st.Uid) != euid {
		return nil, fmt.Errorf("storefs: store directory %s: %w: owned by uid %d, not by the daemon (uid %d)", storeDir, ErrUnsafe, st.Uid, euid)
	}
	if st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("storefs: store directory %s: %w: mode %#o is writable by group or others, who could squat store names (chmod go-w)", storeDir, ErrUnsafe, st.Mode&0o7777)
	}
	if s.stagingFd, err = openStagingRoot(stagingRoot, euid, egid); err != nil {
		return nil, err
	}
	a, err1 := mountID(s.storeFd)
	b, err2 := mountID(s.stagingFd)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("storefs: statx: %w", err)
	}
	if a != b {
		return nil, fmt.Errorf("storefs: staging root %s: %w: not on the store's mount (%s), so trees could not be renamed into the store", stagingRoot, ErrUnsafe, storeDir)
	}
	ok = true
	return s, nil
}

func openErr(what, path string, err error) error {
	if err == unix.ELOOP || err == unix.ENOTDIR {
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("storefs: %s %s: %w: it is a symlink (give the directory itself)", what, path, ErrUnsafe)
		}
		return fmt.Errorf("storefs: %s %s: %w: not a directory", what, path, ErrUnsafe)
	}
	return fmt.Errorf("storefs: opening %s %s: %w", what, path, err)
}

// openStagingRoot opens (making it if missing) the staging root, refusing one
// that is not the daemon's 0700 directory.
func openStagingRoot(path string, uid, gid int) (int, error) {
	parent, name := filepath.Split(path)
	pfd, err := unix.Open(parent, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("storefs: opening %s: %w", parent, err)
	}
	defer unix.Close(pfd)
	var pst unix.Stat_t
	if err := unix.Fstat(pfd, &pst); err != nil {
		return -1, fmt.Errorf("storefs: stat %s: %w", parent, err)
	}
	if pst.Mode&0o022 != 0 {
		return -1, fmt.Errorf("storefs: staging root %s: %w: its parent has mode %#o, writable by group or others, who could replace it", path, ErrUnsafe, pst.Mode&0o7777)
	}
	created := true
	if err := unix.Mkdirat(pfd, name, 0o700); err == unix.EEXIST {
		created = false
	} else if err != nil {
		return -1, fmt.Errorf("storefs: creating staging root %s: %w", path, err)
	}
	fd, err := openBeneath(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, openErr("staging root", path, err)
	}
	if created { // a setgid parent would have given it another group and g+s
		if err := errors.Join(unix.Fchown(fd, uid, gid), unix.Fchmod(fd, 0o700)); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("storefs: staging root %s: %w", path, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("storefs: stat %s: %w", path, err)
	}
	if int(st.Uid) != uid || st.Mode&0o7777 != 0o700 {
		unix.Close(fd)
		return -1, fmt.Errorf("storefs: staging root %s: %w: owner uid %d mode %#o, want uid %d mode 0700", path, ErrUnsafe, st.Uid, st.Mode&0o7777, uid)
	}
	return fd, nil
}

func mountID(fd int) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, err
	}
	return stx.Mnt_id, nil
}

// Close closes the held directories.
func (s *Store) Close() error {
	var err error
	for _, fd := range []*int{&s.storeFd, &s.stagingFd} {
		if *fd >= 0 {
			err = errors.Join(err, unix.Close(*fd))
			*fd = -1
		}
	}
	return err
}

// Exists reports whether <store>/<name> exists (of any type; not followed).
func (s *Store) Exists(name string) (bool, error) {
	if err := checkComponent(name); err != nil {
		return false, err
	}
	var st unix.Stat_t
	switch err := unix.Fstatat(s.storeFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err {
	case nil:
		return true, nil
	case unix.ENOENT:
		return false, nil
	default:
		return false, fmt.Errorf("storefs: stat %q in the store: %w", name, err)
	}
}

// Delete removes the store object <store>/<name> (name: a store path base;
// for the garbage collector, once unregistered): it is first renamed into a fresh root-owned 0700 trash
// directory beneath the staging root, so it disappears from the store at once,
// then removed there, fd-relative.
func (s *Store) Delete(name string) error {
	if _, err := storepath.ParseBase(name); err != nil { // never the staging root or other non-path entries
		return fmt.Errorf("storefs: Delete: %w", err)
	}
	trash := "del-" + randomID()
	if err := unix.Mkdirat(s.stagingFd, trash, 0o700); err != nil {
		return fmt.Errorf("storefs: creating trash: %w", err)
	}
	err := s.moveToTrash(name, trash)
	if rmErr := removeAll(s.stagingFd, trash); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	return err
}

func (s *Store) moveToTrash(name, trash string) error {
	tfd, err := openBeneath(s.stagingFd, trash, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("storefs: opening trash: %w", err)
	}
	defer unix.Close(tfd)
	restore, err := writableDir(s.storeFd, name)
	if err != nil {
		return fmt.Errorf("storefs: deleting %q: %w", name, err)
	}
	if err := unix.Renameat2(s.storeFd, name, tfd, "x", unix.RENAME_NOREPLACE); err != nil {
		restore()
		return fmt.Errorf("storefs: deleting %q: rename into trash: %w", name, err)
	}
	return nil
}

// writableDir makes name beneath dirfd mode 0755 if it is a directory, which
// rename needs to move it to another parent without CAP_DAC_OVERRIDE, and
// returns a function putting 0555 back. Only used on root-owned directories
// under root-owned parents no one else can write.
func writableDir(dirfd int, name string) (restore func(), err error) {
	fd, err := openBeneath(dirfd, name, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return func() {}, nil
	}
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Fchmod(dfd, 0o755); err != nil {
		unix.Close(dfd)
		return nil, err
	}
	return func() {
		unix.Fchmod(dfd, 0o555)
		setMtime1(dfd)
		unix.Close(dfd)
	}, nil
}

// RemoveStaging removes everything beneath the staging root: leftovers of
// stagings and deletions a crash interrupted. Call it at start-up only, before
// any Staging exists.
func (s *Store) RemoveStaging() error {
	names, err := readNames(s.stagingFd, nil, nil)
	if err != nil {
		return fmt.Errorf("storefs: listing %s: %w", s.stagingRoot, err)
	}
	for _, n := range names {
		if err := removeAll(s.stagingFd, n); err != nil {
			return err
		}
	}
	return nil
}

type stagingState uint8

const (
	stateOpen      stagingState = iota // the writer may still be filling it
	stateSealed                        // Seal succeeded: Commit may follow
	stateFailed                        // Seal failed or was interrupted: only Discard
	stateCommitted                     // the tree is in the store
	stateDiscarded                     // gone
)

// Staging is one writer's staging directory. It is not safe for concurrent use.
type Staging struct {
	s      *Store
	id     string
	dir    *os.File
	state  stagingState
	sealed string // name of the sealed tree beneath dir: "out" or "sealed"
	isDir  bool   // the sealed tree's root is a directory
}

// Name of what the writer must create beneath Staging.Dir, and of Seal's copy.
const (
	OutName    = "out"
	sealedName = "sealed"
)

// NewStaging creates <stagingRoot>/<random id>/ owned by uid:gid, mode 0700.
// The writer creates OutName beneath Dir().
func (s *Store) NewStaging(uid, gid uint32) (*Staging, error) {
	if uid == 0 {
		return nil, fmt.Errorf("storefs: staging for uid 0 refused: the writer must be unprivileged")
	}
	id := randomID()
	if err := unix.Mkdirat(s.stagingFd, id, 0o700); err != nil {
		return nil, fmt.Errorf("storefs: creating staging %s: %w", id, err)
	}
	fd, err := openBeneath(s.stagingFd, id, unix.O_RDONLY|unix.O_DIRECTORY)
	if err == nil {
		err = errors.Join(unix.Fchown(fd, int(uid), int(gid)), unix.Fchmod(fd, 0o700))
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		removeAll(s.stagingFd, id)
		return nil, fmt.Errorf("storefs: creating staging %s: %w", id, err)
	}
	return &Staging{s: s, id: id, dir: os.NewFile(uintptr(fd), filepath.Join(s.stagingRoot, id))}, nil
}

// Dir is the staging directory (O_RDONLY|O_DIRECTORY), to hand to the writer.
// It stays owned by the Staging: do not close it.
func (st *Staging) Dir() *os.File { return st.dir }

// SealedName is the name of the sealed tree beneath Dir() after a successful
// Seal: OutName, or "sealed" for a Copy. Read it only through fds beneath Dir().
func (st *Staging) SealedName() string { return st.sealed }

// ID is the staging directory's name beneath the staging root.
func (st *Staging) ID() string { return st.id }

func (st *Staging) fd() int { return int(st.dir.Fd()) }

// Commit moves the sealed tree to <store>/<name> with
// renameat2(RENAME_NOREPLACE), then syncfs on the store. If name exists it
// returns an error matching ErrExists and leaves the sealed tree in place
// (Discard it once the existing path is known valid). Call Discard afterwards
// in every case: it removes what is left of the staging directory.
func (st *Staging) Commit(name string) error {
	if err := st.commit(name); err != nil {
		return err
	}
	if err := st.s.Sync(); err != nil {
		return fmt.Errorf("storefs: Commit %q: %w", name, err)
	}
	return nil
}

// commit is Commit's rename, without the syncfs.
func (st *Staging) commit(name string) error {
	if st.state != stateSealed {
		return fmt.Errorf("storefs: Commit: %w", ErrState)
	}
	if _, err := storepath.ParseBase(name); err != nil {
		return fmt.Errorf("storefs: Commit: %w", err)
	}
	restore := func() {}
	if st.isDir {
		var err error
		if restore, err = writableDir(st.fd(), st.sealed); err != nil {
			return fmt.Errorf("storefs: Commit %q: %w", name, err)
		}
	}
	err := unix.Renameat2(st.fd(), st.sealed, st.s.storeFd, name, unix.RENAME_NOREPLACE)
	restore() // 0555 and mtime 1 again, wherever the directory now is
	if err == unix.EEXIST {
		return fmt.Errorf("storefs: Commit %q: %w", name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("storefs: Commit %q: %w", name, err)
	}
	st.state = stateCommitted
	return nil
}

// Sync makes everything renamed into the store so far durable (syncfs). A
// caller that commits several trees with CommitNoSync calls it once after them.
func (s *Store) Sync() error {
	if err := unix.Syncfs(s.storeFd); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}

// CommitNoSync is Commit without the syncfs: the tree is in the store but not
// yet durable. The caller must call Store.Sync before it registers the path
// as valid (DESIGN.md, sealing step 5); several commits may share one Sync.
func (st *Staging) CommitNoSync(name string) error {
	return st.commit(name)
}

// Discard removes the staging directory and everything in it (the writer may
// have left any shape): it takes the directory back (root, 0700), then removes
// fd-relative, never following a symlink. It may be called after Commit and
// more than once.
func (st *Staging) Discard() error {
	if st.state == stateDiscarded {
		return nil
	}
	var err error
	// After a Commit the directory is root's and, unless the writer left
	// more than out, empty: one rmdir (which never follows anything) does.
	if st.state != stateCommitted || unix.Unlinkat(st.s.stagingFd, st.id, unix.AT_REMOVEDIR) != nil {
		fd := st.fd()
		err = errors.Join(unix.Fchown(fd, euid, egid), unix.Fchmod(fd, 0o700))
		if err == nil {
			err = removeAll(st.s.stagingFd, st.id)
		}
	}
	st.dir.Close()
	st.state = stateDiscarded
	if err != nil {
		return fmt.Errorf("storefs: discarding staging %s: %w", st.id, err)
	}
	return nil
}

// The canonical owner of everything sealed, and of the staging root: the
// daemon's euid and egid (root:root), as Nix chowns to its own.
var euid, egid = os.Geteuid(), os.Getegid()

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// checkComponent accepts one path component naming an entry of the store.
func checkComponent(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("storefs: %q is not a store entry name", name)
	}
	return nil
}

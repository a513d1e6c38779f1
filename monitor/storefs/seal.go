package storefs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"privnix/internal/beneath"

	"golang.org/x/sys/unix"

	"privnix/nix/nar"
	"privnix/nix/nixhash"
	"privnix/nix/refscan"
)

// Limits of a sealed tree, when SealOptions leaves them zero. MaxDepth is the
// narfs/dumpfs limit, so what is sealed can always be dumped again.
const (
	DefaultMaxDepth   = 1024    // directory levels below out (each holds an fd during the walk)
	DefaultMaxEntries = 1 << 22 // nodes: files, symlinks and directories, out included

	// MaxNameBytes bounds the entry names a walk lists in total, so the
	// memory a hostile tree costs the monitor is bounded before it is read.
	MaxNameBytes = 256 << 20
)

// SealOptions says whose tree it is and what to compute.
type SealOptions struct {
	WriterUID  uint32       // every inode must be owned by it (never 0)
	Candidates []string     // hash parts to scan the NAR for (build outputs); nil: no scan
	FlatAlgo   nixhash.Algo // 0: none; else out must be a regular file and its contents are hashed too
	// Copy builds the sealed tree afresh from root-created inodes (exactly
	// st_size bytes copied from each opened file) and hashes the copy; the
	// writer's inodes are only read, then removed. Without Copy the writer's
	// inodes are taken over and canonicalised in place, which is only right
	// when no process could have kept an fd on them (DESIGN.md step 1).
	Copy       bool
	MaxDepth   int // 0: DefaultMaxDepth
	MaxEntries int // 0: DefaultMaxEntries
	// MaxNarSize, if not 0, refuses the tree as soon as its NAR would be
	// larger (a claimed NarSize; stops a sparse 100 TB file early).
	MaxNarSize uint64
}

// Sealed is what Seal found.
type Sealed struct {
	NarHash   nixhash.Hash // SHA-256 of the NAR serialisation
	NarSize   uint64
	FlatHash  nixhash.Hash // FlatAlgo of out's contents, when asked
	Found     []string     // Candidates found in the NAR, sorted
	FileCount uint64       // nodes serialised (files, symlinks, directories)
}

// Seal turns what the writer left at <staging>/out into a canonical tree in
// one pass, through directory fds only, and returns its NAR hash and size.
//
//  1. The staging directory becomes root's, mode 0700, without xattrs: from
//     then on no one else can add, remove or rename anything at its level.
//  2. Every node is opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
//     RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV) and O_PATH|O_NOFOLLOW and typed by
//     fstat of that fd. Refused (*RefusedError): anything but a regular file,
//     directory or symlink; an inode not owned by WriterUID; an inode with
//     links outside the tree (links seen per (dev, ino) against st_nlink); more
//     than MaxDepth levels or MaxEntries nodes; a name a NAR cannot hold; a file
//     that shrank or was replaced; with FlatAlgo, an out that is not a file.
//  3. Canonical form (Nix's canonicalisePathMetaData): owner root:root, mode
//     0444, or 0555 when the owner could execute (directories 0555), so no
//     setuid, setgid, sticky or write bit; no xattrs or ACLs except
//     security.selinux and system.nfs4_acl; mtime 1, atime kept. A directory is
//     chowned to root (0700) before it is listed, so its entries are frozen.
//     Files are read through an O_RDONLY|O_NONBLOCK fd whose (dev, ino) is
//     checked against the typed one. A hard-linked inode (st_nlink > 1) is left
//     alone until the walk has seen all its links, so an inode shared with a
//     file outside the tree is refused before anything of it changes.
//  4. The NAR goes to SHA-256 and, with Candidates, to a reference scanner;
//     with FlatAlgo the file's contents go to that hash as well.
//
// On error the tree may be half canonical: Discard it.
func (st *Staging) Seal(opts SealOptions) (Sealed, error) {
	if st.state != stateOpen {
		return Sealed{}, fmt.Errorf("storefs: Seal: %w", ErrState)
	}
	st.state = stateFailed
	if opts.WriterUID == 0 {
		return Sealed{}, fmt.Errorf("storefs: Seal: writer uid 0 refused")
	}
	if opts.FlatAlgo != 0 && !opts.FlatAlgo.Valid() {
		return Sealed{}, fmt.Errorf("storefs: Seal: invalid flat hash algorithm %d", opts.FlatAlgo)
	}
	fd := st.fd()
	if err := takeStaging(fd); err != nil {
		return Sealed{}, fmt.Errorf("storefs: Seal: taking staging %s back: %w", st.id, err)
	}
	z := newSealer(opts)
	res, err := z.seal(fd)
	if err != nil {
		return Sealed{}, err
	}
	st.state, st.isDir = stateSealed, z.rootIsDir
	st.sealed = OutName
	if opts.Copy {
		st.sealed = sealedName
	}
	return res, nil
}

// takeStaging makes the staging directory root's, 0700, with no xattrs (a
// default ACL left on it would be inherited by the copy).
func takeStaging(fd int) error {
	if err := unix.Fchown(fd, euid, egid); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		return err
	}
	return clearXattrsFD(fd)
}

// level is one open directory of the walk.
type level struct {
	fd    int    // the writer's directory (O_RDONLY|O_DIRECTORY)
	dst   int    // Copy: the new directory; else -1
	rel   string // path from the staging directory, for messages
	names []string
	next  int
}

// linkInfo counts the links of one hard-linked inode.
type linkInfo struct {
	nlink, seen uint64
	rel         string // first link seen
	symlink     bool
	exec        bool
}

type fileKey struct{ dev, ino uint64 }

type sealer struct {
	opts     SealOptions
	w        *nar.Writer
	sink     narSink
	flat     hash.Hash
	stack    []level
	links    map[fileKey]*linkInfo
	deferred []fileKey // take-over: hard-linked inodes to canonicalise at the end
	nodes    int
	budget   listBudget // what listings may still hold: every name listed becomes a node
	dbuf     []byte

	rootIsDir bool
}

// narSink hashes and counts the NAR and feeds the reference scanner.
type narSink struct {
	h    hash.Hash
	n    uint64
	scan *refscan.Scanner
}

func (s *narSink) Write(p []byte) (int, error) {
	s.h.Write(p)
	s.n += uint64(len(p))
	if s.scan != nil {
		s.scan.Write(p)
	}
	return len(p), nil
}

func newSealer(opts SealOptions) *sealer {
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	z := &sealer{opts: opts, links: make(map[fileKey]*linkInfo), dbuf: make([]byte, 32<<10),
		budget: listBudget{names: opts.MaxEntries - 1, bytes: MaxNameBytes}} // - 1: out itself
	z.sink.h = sha256.New()
	if opts.Candidates != nil {
		z.sink.scan = refscan.NewScanner(opts.Candidates)
	}
	if opts.FlatAlgo != 0 {
		z.flat = opts.FlatAlgo.New()
	}
	z.w = nar.NewWriter(&z.sink)
	return z
}

func (z *sealer) seal(stagingFd int) (Sealed, error) {
	defer z.closeAll()
	dst := -1
	if z.opts.Copy {
		// The writer could have left anything next to out, a "sealed" too.
		if err := removeAll(stagingFd, sealedName); err != nil {
			return Sealed{}, err
		}
		dst = stagingFd
	}
	if err := z.node(stagingFd, OutName, dst, sealedName, OutName); err != nil {
		return Sealed{}, err
	}
	for len(z.stack) > 0 {
		if err := z.step(); err != nil {
			return Sealed{}, err
		}
	}
	if err := z.checkLinks(); err != nil {
		return Sealed{}, err
	}
	if !z.opts.Copy {
		if err := z.finishDeferred(stagingFd); err != nil {
			return Sealed{}, err
		}
	}
	if err := z.w.Close(); err != nil {
		return Sealed{}, fmt.Errorf("storefs: Seal: %w", err)
	}
	if max := z.opts.MaxNarSize; max != 0 && z.sink.n > max {
		return Sealed{}, refuse(OutName, ErrTooLarge, fmt.Sprintf("NAR of %d bytes; it may have %d", z.sink.n, max))
	}
	if z.opts.Copy {
		if err := removeAll(stagingFd, OutName); err != nil {
			return Sealed{}, err
		}
	}
	res := Sealed{
		NarHash:   nixhash.Hash{Algo: nixhash.SHA256, Digest: z.sink.h.Sum(nil)},
		NarSize:   z.sink.n,
		FileCount: uint64(z.nodes),
	}
	if z.flat != nil {
		res.FlatHash = nixhash.Hash{Algo: z.opts.FlatAlgo, Digest: z.flat.Sum(nil)}
	}
	if z.sink.scan != nil {
		res.Found = z.sink.scan.Found()
	}
	return res, nil
}

func (z *sealer) closeAll() {
	for _, l := range z.stack {
		unix.Close(l.fd)
		if l.dst >= 0 {
			unix.Close(l.dst)
		}
	}
	z.stack = nil
}

// step serialises the next entry of the innermost directory, or finishes it.
func (z *sealer) step() error {
	top := &z.stack[len(z.stack)-1]
	if top.next == len(top.names) {
		return z.endDir()
	}
	name := top.names[top.next]
	top.next++
	if err := z.w.Entry(name); err != nil {
		return fmt.Errorf("storefs: Seal: %w", err)
	}
	return z.node(top.fd, name, top.dst, name, top.rel+"/"+name)
}

// node serialises (and canonicalises, or copies) name beneath parent; with
// Copy, the copy is dname beneath dparent.
func (z *sealer) node(parent int, name string, dparent int, dname, rel string) error {
	z.nodes++
	if z.nodes > z.opts.MaxEntries {
		return refuse(rel, ErrTooManyEntries, fmt.Sprintf("more than %d", z.opts.MaxEntries))
	}
	if raceHookForTest != nil {
		raceHookForTest("open", rel)
	}
	pfd, err := openBeneath(parent, name, unix.O_PATH)
	if err != nil {
		return openFailed(rel, len(z.stack) == 0, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return fmt.Errorf("storefs: Seal: stat %q: %w", rel, err)
	}
	typ := st.Mode & unix.S_IFMT
	switch typ {
	case unix.S_IFREG, unix.S_IFDIR, unix.S_IFLNK:
	default:
		return refuse(rel, ErrUnsupportedType, beneath.TypeName(st.Mode))
	}
	if st.Uid != z.opts.WriterUID {
		return refuse(rel, ErrOwner, fmt.Sprintf("owned by uid %d, the writer is uid %d", st.Uid, z.opts.WriterUID))
	}
	root := len(z.stack) == 0
	if root && z.flat != nil && typ != unix.S_IFREG {
		return refuse(rel, ErrNotFlat, "flat content needs one regular file")
	}
	shared := false
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		shared = true
		z.countLink(&st, rel)
	}
	switch typ {
	case unix.S_IFLNK:
		return z.symlink(parent, name, pfd, dparent, dname, rel, shared)
	case unix.S_IFREG:
		return z.file(parent, name, &st, dparent, dname, rel, shared)
	}
	if root {
		z.rootIsDir = true
	}
	return z.dir(pfd, dparent, dname, rel)
}

// raceHookForTest, when set, runs before each lookup ("open") and before a
// typed regular file is reopened for reading ("reopen"), so tests can swap
// entries where a concurrent writer could.
var raceHookForTest func(step, rel string)

// openFailed turns a failed lookup into a refusal when the tree is to blame:
// no out at all, an entry gone or replaced since its directory was listed,
// a mount point.
func openFailed(rel string, root bool, err error) error {
	switch {
	case err == unix.ENOENT && root:
		return refuse(rel, ErrMissing, "the writer left nothing")
	case err == unix.ENOENT || err == unix.ELOOP || err == unix.ENOTDIR:
		return refuse(rel, ErrChanged, err.Error())
	case err == unix.EXDEV:
		return refuse(rel, ErrUnsupportedType, "a mount point")
	case err == unix.EWOULDBLOCK:
		return refuse(rel, ErrChanged, "held by a lease") // only a live writer can hold one
	}
	return fmt.Errorf("storefs: Seal: opening %q: %w", rel, err)
}

func (z *sealer) countLink(st *unix.Stat_t, rel string) {
	k := fileKey{st.Dev, st.Ino}
	if l := z.links[k]; l != nil {
		l.seen++
		return
	}
	z.links[k] = &linkInfo{nlink: st.Nlink, seen: 1, rel: rel,
		symlink: st.Mode&unix.S_IFMT == unix.S_IFLNK, exec: st.Mode&unix.S_IXUSR != 0}
	z.deferred = append(z.deferred, k)
}

func (z *sealer) symlink(parent int, name string, pfd, dparent int, dname, rel string, shared bool) error {
	target, err := beneath.Readlink(pfd, 4096)
	if err != nil {
		return fmt.Errorf("storefs: Seal: readlink %q: %w", rel, err)
	}
	if err := nar.CheckTarget(target); err != nil {
		return refuse(rel, ErrName, err.Error())
	}
	if err := z.w.Symlink(target); err != nil {
		return fmt.Errorf("storefs: Seal: %w", err)
	}
	switch {
	case z.opts.Copy:
		// A new link in root's 0700 directory: nothing else can have it.
		if err := unix.Symlinkat(target, dparent, dname); err != nil {
			return fmt.Errorf("storefs: Seal: copying %q: %w", rel, err)
		}
		lfd, err := openBeneath(dparent, dname, unix.O_PATH)
		if err != nil {
			return fmt.Errorf("storefs: Seal: copying %q: %w", rel, err)
		}
		defer unix.Close(lfd)
		err = errors.Join(chownFD(lfd, euid, egid), setMtime1(lfd))
		if err != nil {
			return fmt.Errorf("storefs: Seal: canonicalising %q: %w", rel, err)
		}
	case shared:
		// Canonicalised at the end, once all links are known to be inside,
		// through an O_PATH fd: xattrs must be checked now, from the parent.
		names, err := listXattrsAt(parent, name)
		if err != nil {
			return fmt.Errorf("storefs: Seal: %q: %w", rel, err)
		}
		if len(names) > 0 {
			return refuse(rel, ErrXattr, fmt.Sprintf("%q", names))
		}
	default:
		err := errors.Join(clearXattrsAt(parent, name), chownFD(pfd, euid, egid), setMtime1(pfd))
		if err != nil {
			return fmt.Errorf("storefs: Seal: canonicalising %q: %w", rel, err)
		}
	}
	return nil
}

func fileMode(exec bool) uint32 {
	if exec {
		return 0o555
	}
	return 0o444
}

// canonFile makes the regular file fd root's, without xattrs, 0444 or 0555,
// mtime 1. chown by root also drops setuid, setgid and file capabilities.
func canonFile(fd int, exec bool) error {
	if err := unix.Fchown(fd, euid, egid); err != nil {
		return err
	}
	names, err := listWith(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil {
		return err
	}
	if len(names) > 0 {
		if err := unix.Fchmod(fd, 0o600); err != nil { // user.* needs write permission
			return err
		}
		if err := clearXattrsFD(fd); err != nil {
			return err
		}
	}
	if err := unix.Fchmod(fd, fileMode(exec)); err != nil {
		return err
	}
	return setMtime1(fd)
}

func (z *sealer) file(parent int, name string, want *unix.Stat_t, dparent int, dname, rel string, shared bool) error {
	if raceHookForTest != nil {
		raceHookForTest("reopen", rel)
	}
	fd, err := openBeneath(parent, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return openFailed(rel, false, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("storefs: Seal: stat %q: %w", rel, err)
	}
	if st.Dev != want.Dev || st.Ino != want.Ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return refuse(rel, ErrChanged, "replaced")
	}
	exec := want.Mode&unix.S_IXUSR != 0
	if !z.opts.Copy && !shared {
		if err := canonFile(fd, exec); err != nil {
			return fmt.Errorf("storefs: Seal: canonicalising %q: %w", rel, err)
		}
	}
	if max := z.opts.MaxNarSize; max != 0 && (uint64(st.Size) > max || z.sink.n+uint64(st.Size) > max) {
		return refuse(rel, ErrTooLarge, fmt.Sprintf("%d bytes; the NAR may have %d", st.Size, max))
	}
	cr := contentReader{fd: fd, left: st.Size, dst: -1}
	if len(z.stack) == 0 {
		cr.flat = z.flat
	}
	if z.opts.Copy {
		cr.dst, err = unix.Openat(dparent, dname, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("storefs: Seal: copying %q: %w", rel, err)
		}
		defer unix.Close(cr.dst)
	}
	if err := z.w.File(exec, uint64(st.Size), &cr); err != nil {
		if errors.Is(err, nar.ErrShortFile) {
			return refuse(rel, ErrChanged, "shrank while read")
		}
		return fmt.Errorf("storefs: Seal: reading %q: %w", rel, err)
	}
	if z.opts.Copy {
		// Ftruncate: the copy may end in a hole (see contentReader).
		err := errors.Join(unix.Ftruncate(cr.dst, st.Size), unix.Fchmod(cr.dst, fileMode(exec)), setMtime1(cr.dst))
		if err != nil {
			return fmt.Errorf("storefs: Seal: canonicalising %q: %w", rel, err)
		}
	}
	return nil
}

// contentReader reads at most left bytes from fd, copying them to dst (Copy)
// and to flat (FlatAlgo): what is hashed is exactly what is written.
type contentReader struct {
	fd   int
	left int64
	dst  int
	flat hash.Hash
}

func (r *contentReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := unix.Read(r.fd, p)
	for err == unix.EINTR {
		n, err = unix.Read(r.fd, p)
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	r.left -= int64(n)
	if r.dst >= 0 {
		if err := writeSparse(r.dst, p[:n]); err != nil {
			return 0, fmt.Errorf("writing copy: %w", err)
		}
	}
	if r.flat != nil {
		r.flat.Write(p[:n])
	}
	return n, nil
}

// zeros is the hole granularity of copies.
var zeros [64 << 10]byte

// writeSparse writes p at fd's offset, seeking over each all-zero 64 KiB
// segment instead, so that a sparse file's copy stays sparse (the caller
// ftruncates to the final size).
func writeSparse(fd int, p []byte) error {
	for len(p) > 0 {
		data := 0 // non-zero segments to write from the start of p
		for data < len(p) {
			n := min(len(p)-data, len(zeros))
			if bytes.Equal(p[data:data+n], zeros[:n]) {
				break
			}
			data += n
		}
		if data > 0 {
			if err := writeAll(fd, p[:data]); err != nil {
				return err
			}
			p = p[data:]
			continue
		}
		n := min(len(p), len(zeros))
		if _, err := unix.Seek(fd, int64(n), io.SeekCurrent); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func (z *sealer) dir(pfd, dparent int, dname, rel string) error {
	if len(z.stack) >= z.opts.MaxDepth {
		return refuse(rel, ErrTooDeep, fmt.Sprintf("more than %d levels", z.opts.MaxDepth))
	}
	fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("storefs: Seal: opening directory %q: %w", rel, err)
	}
	lv := level{fd: fd, dst: -1, rel: rel}
	z.stack = append(z.stack, lv) // closed by closeAll from here on
	top := &z.stack[len(z.stack)-1]
	if !z.opts.Copy {
		// Root's and 0700 before it is listed: its entries are frozen.
		err := errors.Join(unix.Fchown(fd, euid, egid), unix.Fchmod(fd, 0o700))
		if err == nil {
			err = clearXattrsFD(fd)
		}
		if err != nil {
			return fmt.Errorf("storefs: Seal: canonicalising %q: %w", rel, err)
		}
	}
	if top.names, err = readNames(fd, z.dbuf, &z.budget); err == errListLimit {
		return refuse(rel, ErrTooManyEntries, fmt.Sprintf("more than %d entries or %d bytes of names", z.opts.MaxEntries, MaxNameBytes))
	} else if err != nil {
		return fmt.Errorf("storefs: Seal: listing %q: %w", rel, err)
	}
	for _, n := range top.names {
		if err := nar.CheckName(n); err != nil {
			return refuse(rel, ErrName, err.Error())
		}
	}
	if z.opts.Copy {
		if err := unix.Mkdirat(dparent, dname, 0o700); err != nil {
			return fmt.Errorf("storefs: Seal: copying %q: %w", rel, err)
		}
		if top.dst, err = openBeneath(dparent, dname, unix.O_RDONLY|unix.O_DIRECTORY); err != nil {
			return fmt.Errorf("storefs: Seal: copying %q: %w", rel, err)
		}
	}
	if err := z.w.StartDir(); err != nil {
		return fmt.Errorf("storefs: Seal: %w", err)
	}
	return nil
}

// endDir finishes the innermost directory: 0555 and mtime 1 once nothing more
// is created in it.
func (z *sealer) endDir() error {
	top := z.stack[len(z.stack)-1]
	fd := top.fd
	if top.dst >= 0 {
		fd = top.dst
	}
	err := errors.Join(unix.Fchmod(fd, 0o555), setMtime1(fd))
	unix.Close(top.fd)
	if top.dst >= 0 {
		unix.Close(top.dst)
	}
	z.stack = z.stack[:len(z.stack)-1]
	if err != nil {
		return fmt.Errorf("storefs: Seal: canonicalising %q: %w", top.rel, err)
	}
	if err := z.w.EndDir(); err != nil {
		return fmt.Errorf("storefs: Seal: %w", err)
	}
	return nil
}

// checkLinks refuses the tree if an inode has links the walk did not see.
func (z *sealer) checkLinks() error {
	for _, k := range z.deferred {
		l := z.links[k]
		if l.seen != l.nlink {
			return refuse(l.rel, ErrHardLink, fmt.Sprintf("%d links, %d of them in the tree", l.nlink, l.seen))
		}
	}
	return nil
}

// finishDeferred canonicalises the hard-linked inodes (take-over only), each
// reopened through its first link beneath the now frozen tree.
func (z *sealer) finishDeferred(stagingFd int) error {
	for _, k := range z.deferred {
		l := z.links[k]
		flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
		if l.symlink {
			flags = unix.O_PATH
		}
		fd, err := openBeneath(stagingFd, l.rel, flags)
		if err != nil {
			return fmt.Errorf("storefs: Seal: reopening %q: %w", l.rel, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		switch {
		case err != nil:
		case st.Dev != k.dev || st.Ino != k.ino || st.Nlink != l.seen:
			err = refuse(l.rel, ErrChanged, "hard-linked inode replaced")
		case l.symlink:
			err = errors.Join(chownFD(fd, euid, egid), setMtime1(fd))
		default:
			err = canonFile(fd, l.exec)
		}
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, ErrRefused) {
				return err
			}
			return fmt.Errorf("storefs: Seal: canonicalising %q: %w", l.rel, err)
		}
	}
	return nil
}

package gc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"privnix/nix/storepath"
)

// Kind says where a root was found.
type Kind uint8

const (
	// Perm: a symlink into the store, or a file named like a store path, in
	// <state>/gcroots or <state>/profiles.
	Perm Kind = iota + 1
	// Indirect: a link in those directories pointing outside the store at a
	// link (a user's ./result) that points into the store. Link is the
	// user's link, as Nix reports it.
	Indirect
	// Runtime: a store path in use by a running process (/proc).
	Runtime
	// Temp: a temporary root held by a connection, build or seal.
	Temp
)

func (k Kind) String() string {
	switch k {
	case Perm:
		return "permanent"
	case Indirect:
		return "indirect"
	case Runtime:
		return "runtime"
	case Temp:
		return "temporary"
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Root is one root: the link (or /proc entry) that names a store path.
type Root struct {
	Link string // absolute path of the link; "/proc/<pid>/fd/3"; "{temp:…}"
	Path storepath.Path
	Kind Kind
}

// CensoredLink is what untrusted clients see instead of the link of a
// runtime or temporary root (Nix 2.8's FindRoots; policy.CensoredLink).
const CensoredLink = "{censored}"

// Shown returns roots as FindRoots answers a client: for an untrusted one,
// the links of runtime and temporary roots are CensoredLink.
func Shown(roots []Root, trusted bool) []Root {
	out := slices.Clone(roots)
	if !trusted {
		for i := range out {
			if out[i].Kind == Runtime || out[i].Kind == Temp {
				out[i].Link = CensoredLink
			}
		}
	}
	return out
}

// Paths returns the store paths of roots.
func Paths(roots []Root) []storepath.Path {
	ps := make([]storepath.Path, len(roots))
	for i, r := range roots {
		ps[i] = r.Path
	}
	return ps
}

// Unresolved is an indirect root whose target could not be read in time or
// at all: the link is kept, and it protects nothing this run.
type Unresolved struct {
	Link   string // the link in <state>/gcroots
	Target string // where it points (a user's link)
	Err    error
}

// Scan is what ScanRootsDir found.
type Scan struct {
	Roots      []Root
	Unresolved []Unresolved
	// Stale lists links in <state>/gcroots/auto whose target no longer exists
	// (Nix removes them: see RemoveStale).
	Stale []string
	// Skipped lists links and files that name no store path Nix would accept
	// (a target like <store>/../etc, a bad base name), with the reason.
	Skipped []string
}

// ResolveAs reads, as uid, the symlink at path (one level, as Nix does) and
// returns its target, giving up at deadline.
type ResolveAs func(uid uint32, path string, deadline time.Time) (target string, err error)

// ErrTimeout: an indirect root was not resolved before its deadline.
var ErrTimeout = errors.New("not resolved in time")

// ResolveTimeout is the deadline ScanRootsDir gives each indirect root.
const ResolveTimeout = 2 * time.Second

// Limits of the walk: deeper directories and entries past the count are
// ignored (and reported in Skipped).
const (
	maxDepth   = 32
	maxEntries = 1 << 20
	// maxParallel indirect roots are resolved at once.
	maxParallel = 8
)

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openBeneath opens name beneath dirfd without following any symlink.
func openBeneath(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
			Resolve: resolveFlags,
		})
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// readlinkat reads the target of the symlink name beneath dirfd (a magic
// link of /proc is read, never opened).
func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if n >= len(buf) {
			return "", unix.ENAMETOOLONG
		}
		return string(buf[:n]), nil
	}
}

// readDirNames lists at most max entries of the directory fd (which it
// leaves open); a directory holding more is cut short, not read whole.
func readDirNames(fd, max int) ([]string, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	var names []string
	for len(names) < max {
		batch, err := f.Readdirnames(min(1024, max-len(names)))
		names = append(names, batch...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return names, nil
}

// storeName returns the first component after storeDir of the absolute path
// target, if target lies in the store (Nix's isInStore + toStorePath).
func storeName(storeDir storepath.Dir, target string) (string, bool) {
	prefix := string(storeDir) + "/"
	if !strings.HasPrefix(target, prefix) {
		return "", false
	}
	rest := target[len(prefix):]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}

// ScanRootsDir finds the roots in <stateDir>/gcroots and <stateDir>/profiles
// as Nix's findRoots does (§6.7), with directory fds only: every directory is
// opened with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS and O_NOFOLLOW,
// every entry typed with fstatat(AT_SYMLINK_NOFOLLOW), every link read with
// readlinkat. No symlink is followed as root:
//   - a symlink whose target is in the store: a Perm root (the first
//     component after storeDir);
//   - a symlink pointing elsewhere (gcroots/auto/<h> → /home/alice/result): an
//     indirect root, read by resolveIndirect (the owner's helper), a Root of
//     kind Indirect if that link points into the store;
//   - a regular file whose name is a store base name: a Perm root;
//   - directories are walked (at most maxDepth deep); anything else ignored.
//
// Whether a root is valid is not checked here (Live ignores invalid roots;
// FindRoots should drop them, as Nix does).
func ScanRootsDir(ctx context.Context, stateDir string, storeDir storepath.Dir, resolve ResolveAs) (*Scan, error) {
	sfd, err := unix.Open(stateDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("gc: opening the state directory %s: %w", stateDir, err)
	}
	defer unix.Close(sfd)
	w := &walker{storeDir: storeDir, autoDir: filepath.Join(stateDir, "gcroots", "auto"), scan: &Scan{}}
	for _, top := range []string{"gcroots", "profiles"} {
		fd, err := openBeneath(sfd, top, unix.O_RDONLY|unix.O_DIRECTORY)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("gc: opening %s: %w", filepath.Join(stateDir, top), err)
		}
		err = w.walk(fd, filepath.Join(stateDir, top), 0)
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
	}
	w.resolveAll(ctx, resolve)
	// A relative link to a link in the same root-owned directory (profiles'
	// "profile" → "profile-1-link") names the same root twice: Nix keeps a
	// set of links per path.
	type key struct {
		link string
		path storepath.Path
	}
	seen := map[key]bool{}
	w.scan.Roots = slices.DeleteFunc(w.scan.Roots, func(r Root) bool {
		k := key{r.Link, r.Path}
		dup := seen[k]
		seen[k] = true
		return dup
	})
	return w.scan, nil
}

type indirect struct{ link, target string }

type walker struct {
	storeDir storepath.Dir
	autoDir  string
	scan     *Scan
	entries  int
	indirect []indirect
}

func (w *walker) skip(path, why string) {
	w.scan.Skipped = append(w.scan.Skipped, path+": "+why)
}

// walk visits the directory fd, whose path is dir.
func (w *walker) walk(fd int, dir string, depth int) error {
	names, err := readDirNames(fd, maxEntries-w.entries+1)
	if err != nil {
		return fmt.Errorf("gc: listing %s: %w", dir, err)
	}
	slices.Sort(names)
	for _, name := range names {
		if w.entries++; w.entries > maxEntries {
			w.skip(dir, "too many entries")
			return nil
		}
		path := filepath.Join(dir, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue // removed while we walked
			}
			return fmt.Errorf("gc: stat %s: %w", path, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if depth+1 >= maxDepth {
				w.skip(path, "too deep")
				continue
			}
			sub, err := openBeneath(fd, name, unix.O_RDONLY|unix.O_DIRECTORY)
			if err == unix.ENOENT || err == unix.ELOOP || err == unix.ENOTDIR || err == unix.EXDEV {
				continue // replaced while we walked: not followed
			}
			if err != nil {
				return fmt.Errorf("gc: opening %s: %w", path, err)
			}
			err = w.walk(sub, path, depth+1)
			unix.Close(sub)
			if err != nil {
				return err
			}
		case unix.S_IFLNK:
			target, err := readlinkat(fd, name)
			if err == unix.ENOENT || err == unix.EINVAL {
				continue
			}
			if err != nil {
				return fmt.Errorf("gc: reading link %s: %w", path, err)
			}
			w.link(path, dir, target)
		case unix.S_IFREG:
			if p, err := storepath.ParseBase(name); err == nil {
				w.scan.Roots = append(w.scan.Roots, Root{Link: path, Path: p, Kind: Perm})
			}
		}
	}
	return nil
}

func (w *walker) link(path, dir, target string) {
	if !filepath.IsAbs(target) {
		target = filepath.Join(dir, target)
	}
	if name, ok := storeName(w.storeDir, target); ok {
		p, err := storepath.ParseBase(name)
		if err != nil {
			w.skip(path, fmt.Sprintf("target %q is not a store path", target))
			return
		}
		w.scan.Roots = append(w.scan.Roots, Root{Link: path, Path: p, Kind: Perm})
		return
	}
	w.indirect = append(w.indirect, indirect{link: path, target: filepath.Clean(target)})
}

// resolveAll resolves the indirect roots, maxParallel at a time.
func (w *walker) resolveAll(ctx context.Context, resolve ResolveAs) {
	type answer struct {
		root  Root
		ok    bool
		stale bool
		err   error
	}
	answers := make([]answer, len(w.indirect))
	budget := newTimeoutBudget()
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, in := range w.indirect {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			a := &answers[i]
			deadline := time.Now().Add(ResolveTimeout)
			if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
				deadline = d
			}
			var target string
			var err error
			if err = ctx.Err(); err == nil {
				target, err = resolveIndirect(in.target, budget.wrap(resolve), deadline)
			}
			switch {
			case errors.Is(err, errStale):
				a.stale = true
			case errors.Is(err, errNotLink):
			case err != nil:
				a.err = err
			default:
				name, inStore := storeName(w.storeDir, target)
				if !inStore {
					return // a link to elsewhere: not a root (Nix)
				}
				p, perr := storepath.ParseBase(name)
				if perr != nil {
					a.err = fmt.Errorf("target %q is not a store path", target)
					return
				}
				a.root, a.ok = Root{Link: in.target, Path: p, Kind: Indirect}, true
			}
		}()
	}
	wg.Wait()
	for i, a := range answers {
		in := w.indirect[i]
		switch {
		case a.ok:
			w.scan.Roots = append(w.scan.Roots, a.root)
		case a.stale:
			if filepath.Dir(in.link) == w.autoDir {
				w.scan.Stale = append(w.scan.Stale, in.link)
			}
		case a.err != nil:
			w.scan.Unresolved = append(w.scan.Unresolved, Unresolved{Link: in.link, Target: in.target, Err: a.err})
		}
	}
}

// MaxTimeoutsPerUID: after this many of one user's links timed out in a
// scan, that user's other links are not tried (each would cost the full
// deadline: a user with a hanging FUSE or NFS home cannot stall the
// collector for long).
const MaxTimeoutsPerUID = 2

// ErrTooManyTimeouts: a link was not tried because its owner's earlier links
// timed out (MaxTimeoutsPerUID).
var ErrTooManyTimeouts = errors.New("not tried: this user's other links timed out")

type timeoutBudget struct {
	mu       sync.Mutex
	cond     *sync.Cond
	timeouts map[uint32]int
	inFlight map[uint32]int
}

func newTimeoutBudget() *timeoutBudget {
	b := &timeoutBudget{timeouts: map[uint32]int{}, inFlight: map[uint32]int{}}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// wrap starts a resolution for a uid only while its timeouts so far plus
// those in flight are fewer than MaxTimeoutsPerUID, and none once that many
// have timed out: a user whose links all hang costs one deadline.
func (b *timeoutBudget) wrap(resolve ResolveAs) ResolveAs {
	if resolve == nil {
		return nil
	}
	return func(uid uint32, path string, deadline time.Time) (string, error) {
		b.mu.Lock()
		for b.timeouts[uid] < MaxTimeoutsPerUID && b.timeouts[uid]+b.inFlight[uid] >= MaxTimeoutsPerUID {
			b.cond.Wait()
		}
		if b.timeouts[uid] >= MaxTimeoutsPerUID {
			b.mu.Unlock()
			return "", ErrTooManyTimeouts
		}
		b.inFlight[uid]++
		b.mu.Unlock()
		target, err := resolve(uid, path, deadline)
		b.mu.Lock()
		b.inFlight[uid]--
		if errors.Is(err, ErrTimeout) {
			b.timeouts[uid]++
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		return target, err
	}
}

var (
	errStale   = errors.New("the link does not exist")
	errNotLink = errors.New("not a symlink")
)

// resolveIndirect reads the user's link at target (absolute, clean). Its
// directory is opened by root with openat2 RESOLVE_NO_SYMLINKS (O_PATH: no
// read, nothing followed) only to learn who owns it; the link itself is read
// by resolve as that owner. When the directory is root's (/tmp, /root), the
// link's own owner is used; a link root owns in a directory root owns is read
// here with readlinkat on the directory fd, following nothing. The opening
// runs under the deadline too: a hung network home leaves a goroutine behind
// but never the collector.
func resolveIndirect(target string, resolve ResolveAs, deadline time.Time) (string, error) {
	if len(target) >= unix.PathMax || !filepath.IsAbs(target) || target == "/" {
		return "", fmt.Errorf("unusable link target %q", target)
	}
	dir, base := filepath.Split(target)
	type opened struct {
		fd   int
		dir  unix.Stat_t
		link unix.Stat_t
		err  error
	}
	ch := make(chan opened, 1)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	go func() {
		var o opened
		o.fd, o.err = unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if o.err == nil {
			if o.err = unix.Fstat(o.fd, &o.dir); o.err == nil {
				o.err = unix.Fstatat(o.fd, base, &o.link, unix.AT_SYMLINK_NOFOLLOW)
			}
			if o.err != nil {
				unix.Close(o.fd)
			}
		}
		ch <- o // buffered: a late answer is dropped below
	}()
	var o opened
	select {
	case o = <-ch:
	case <-timer.C:
		go func() {
			if late := <-ch; late.err == nil {
				unix.Close(late.fd)
			}
		}()
		return "", ErrTimeout
	}
	switch {
	case o.err == unix.ENOENT || o.err == unix.ENOTDIR:
		return "", errStale
	case o.err == unix.ELOOP:
		return "", fmt.Errorf("a directory on the way to %s is a symlink (not followed)", target)
	case o.err != nil:
		return "", o.err
	}
	defer unix.Close(o.fd)
	if o.link.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", errNotLink
	}
	uid := o.dir.Uid
	if uid == 0 {
		uid = o.link.Uid
	}
	if uid == 0 {
		return readlinkat(o.fd, base)
	}
	if resolve == nil {
		return "", errors.New("no resolver for user links")
	}
	return resolve(uid, target, deadline)
}

// RemoveStale unlinks stale links (Scan.Stale) from <stateDir>/gcroots/auto,
// as Nix does ("removing stale link"). It refuses to touch anything unless
// that directory is root's and writable by no one else, and removes only
// symlinks directly in it.
func RemoveStale(stateDir string, links []string) error {
	autoDir := filepath.Join(stateDir, "gcroots", "auto")
	sfd, err := unix.Open(stateDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	defer unix.Close(sfd)
	fd, err := openBeneath(sfd, "gcroots/auto", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("gc: opening %s: %w", autoDir, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return fmt.Errorf("gc: %s is not root's alone (uid %d, mode %o): not removing anything", autoDir, st.Uid, st.Mode&0o7777)
	}
	var errs []error
	for _, l := range links {
		if filepath.Dir(l) != autoDir {
			errs = append(errs, fmt.Errorf("gc: %s is not in %s", l, autoDir))
			continue
		}
		name := filepath.Base(l)
		var lst unix.Stat_t
		if err := unix.Fstatat(fd, name, &lst, unix.AT_SYMLINK_NOFOLLOW); err != nil || lst.Mode&unix.S_IFMT != unix.S_IFLNK {
			continue
		}
		if err := unix.Unlinkat(fd, name, 0); err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("gc: removing %s: %w", l, err))
		}
	}
	return errors.Join(errs...)
}

// RootsConfig says where Gather looks.
type RootsConfig struct {
	StateDir  string
	StoreDir  storepath.Dir
	Resolve   ResolveAs // nil: only indirect roots in root-owned directories count
	ProcDir   string    // "" = /proc
	NoRuntime bool      // skip /proc (tests, or a store no process can use)
}

// ValidFilter is what Gather needs of the database (*storedb.DB has it).
type ValidFilter interface {
	ValidAmong(ps []storepath.Path) ([]storepath.Path, error)
}

// Gather finds the permanent, indirect and runtime roots and keeps those
// naming a valid path, as Nix's findRoots does (it skips invalid roots).
// Temporary roots are the monitor's to add. For FindRoots, pass the result
// (plus temp roots) through Shown; for Collect, Paths of it is Options.Roots.
func Gather(ctx context.Context, cfg RootsConfig, db ValidFilter) ([]Root, *Scan, RuntimeStats, error) {
	var stats RuntimeStats
	scan, err := ScanRootsDir(ctx, cfg.StateDir, cfg.StoreDir, cfg.Resolve)
	if err != nil {
		return nil, nil, stats, err
	}
	roots := slices.Clone(scan.Roots)
	if !cfg.NoRuntime {
		var rt []Root
		rt, stats, err = RuntimeRoots(cfg.ProcDir, cfg.StoreDir)
		if err != nil {
			return nil, nil, stats, err
		}
		roots = append(roots, rt...)
	}
	valid, err := db.ValidAmong(Paths(roots))
	if err != nil {
		return nil, nil, stats, fmt.Errorf("gc: %w", err)
	}
	ok := make(map[storepath.Path]bool, len(valid))
	for _, p := range valid {
		ok[p] = true
	}
	roots = slices.DeleteFunc(roots, func(r Root) bool { return !ok[r.Path] })
	return roots, scan, stats, nil
}

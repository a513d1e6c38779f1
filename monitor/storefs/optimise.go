package storefs

import (
	"crypto/sha256"
	"fmt"

	"golang.org/x/sys/unix"

	"privnix/internal/narfs/dumpfs"
	"privnix/nix/nixbase32"
	"privnix/nix/storepath"
)

// LinksDir is the store's directory of hard links to file contents, as Nix
// names it: <store>/.links/<nix32 SHA-256 of the file's NAR serialisation>.
const LinksDir = ".links"

// OptimiseStats counts what Optimise did (Nix's OptimiseStats).
type OptimiseStats struct {
	FilesLinked uint64 // files replaced by a link to an identical one
	BytesFreed  uint64 // their st_size
}

// Linker hard-links identical files of store objects through LinksDir
// (nix-store --optimise, §6.13, and auto-optimise-store). The caller keeps
// the store objects it walks from being deleted meanwhile (the GC lock, or a
// temporary root). Two Linkers may race on one LinksDir entry: linking is
// retried, and a file is only ever replaced by a link to identical bytes.
type Linker struct {
	s      *Store
	links  int // LinksDir, O_RDONLY
	inodes map[uint64]bool
	Stats  OptimiseStats
}

// NewLinker opens (and makes, root's, 0755) LinksDir.
func (s *Store) NewLinker() (*Linker, error) {
	if err := unix.Mkdirat(s.storeFd, LinksDir, 0o755); err != nil && err != unix.EEXIST {
		return nil, fmt.Errorf("storefs: making %s: %w", LinksDir, err)
	}
	fd, err := openBeneath(s.storeFd, LinksDir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, fmt.Errorf("storefs: opening %s: %w", LinksDir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Uid != uint32(euid) || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("storefs: %s is not the daemon's or is writable by others: %w", LinksDir, ErrUnsafe)
	}
	return &Linker{s: s, links: fd, inodes: map[uint64]bool{}}, nil
}

// LoadInodes reads the inodes LinksDir holds, so that Optimise skips files
// already linked without hashing them (worth it for a whole store; a path
// just registered has none).
func (l *Linker) LoadInodes() error {
	names, err := readNames(l.links, nil, nil)
	if err != nil {
		return fmt.Errorf("storefs: listing %s: %w", LinksDir, err)
	}
	var st unix.Stat_t
	for _, n := range names {
		if unix.Fstatat(l.links, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			l.inodes[st.Ino] = true
		}
	}
	return nil
}

// Close releases LinksDir.
func (l *Linker) Close() { unix.Close(l.links) }

// Optimise links the regular files and symlinks of the store object name
// (a store path base). A writable file is skipped, as Nix skips it; EMLINK
// and ENOSPC leave a file as it is.
func (l *Linker) Optimise(name string) error {
	if _, err := storepath.ParseBase(name); err != nil {
		return fmt.Errorf("storefs: Optimise: %w", err)
	}
	return l.entry(l.s.storeFd, name, true)
}

// entry optimises name beneath dirfd; top: dirfd is the store directory.
func (l *Linker) entry(dirfd int, name string, top bool) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("storefs: optimising %q: %w", name, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return l.dir(dirfd, name)
	case unix.S_IFREG:
		if st.Mode&unix.S_IWUSR != 0 {
			return nil // Nix: "skipping suspicious writable file"
		}
	case unix.S_IFLNK:
	default:
		return nil
	}
	if st.Nlink > 1 && l.inodes[st.Ino] {
		return nil // already linked
	}
	return l.file(dirfd, name, &st, top)
}

func (l *Linker) dir(parent int, name string) error {
	fd, err := openBeneath(parent, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("storefs: optimising %q: %w", name, err)
	}
	defer unix.Close(fd)
	names, err := readNames(fd, nil, nil)
	if err != nil {
		return fmt.Errorf("storefs: listing %q: %w", name, err)
	}
	for _, n := range names {
		if err := l.entry(fd, n, false); err != nil {
			return err
		}
	}
	return nil
}

// file links one regular file or symlink (st is its lstat).
func (l *Linker) file(dirfd int, name string, st *unix.Stat_t, top bool) error {
	h := sha256.New()
	if err := dumpfs.Dump(h, dirfd, name); err != nil {
		return fmt.Errorf("storefs: hashing %q: %w", name, err)
	}
	link := nixbase32.EncodeToString(h.Sum(nil))
	for range 2 {
		err := unix.Linkat(dirfd, name, l.links, link, 0)
		if err == nil {
			l.inodes[st.Ino] = true
			return nil
		}
		if err == unix.ENOSPC || err == unix.EMLINK {
			return nil
		}
		if err != unix.EEXIST {
			return fmt.Errorf("storefs: linking %q: %w", name, err)
		}
		var ls unix.Stat_t
		if err := unix.Fstatat(l.links, link, &ls, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("storefs: %s/%s: %w", LinksDir, link, err)
		}
		if ls.Ino == st.Ino {
			return nil
		}
		if ls.Size == st.Size && ls.Mode&unix.S_IFMT == st.Mode&unix.S_IFMT {
			return l.replace(dirfd, name, link, st, top)
		}
		unix.Unlinkat(l.links, link, 0) // Nix: "removing corrupted link"
	}
	return nil
}

// replace puts a hard link to LinksDir/link in place of name beneath dirfd:
// linked first under a fresh name in the staging root (where a crash leaves
// it for start-up to remove), then renamed over name. The directory holding
// name is made writable meanwhile, then 0555 with mtime 1 again.
func (l *Linker) replace(dirfd int, name, link string, st *unix.Stat_t, top bool) error {
	tmp := "link-" + randomID()
	if err := unix.Linkat(l.links, link, l.s.stagingFd, tmp, 0); err != nil {
		if err == unix.EMLINK || err == unix.ENOSPC {
			return nil
		}
		return fmt.Errorf("storefs: linking %s/%s: %w", LinksDir, link, err)
	}
	if !top {
		if err := unix.Fchmod(dirfd, 0o755); err != nil {
			unix.Unlinkat(l.s.stagingFd, tmp, 0)
			return fmt.Errorf("storefs: optimising %q: %w", name, err)
		}
		defer func() { unix.Fchmod(dirfd, 0o555); setMtime1(dirfd) }()
	}
	if err := unix.Renameat(l.s.stagingFd, tmp, dirfd, name); err != nil {
		unix.Unlinkat(l.s.stagingFd, tmp, 0)
		return fmt.Errorf("storefs: optimising %q: %w", name, err)
	}
	l.Stats.FilesLinked++
	l.Stats.BytesFreed += uint64(st.Size)
	return nil
}

// RemoveUnusedLinks removes every LinksDir entry no store object links to
// any more (link count 1), as Nix's collector does at its end, and returns
// the bytes that freed and what hard linking still saves, as Nix reckons it:
// (links - 1) × size per entry, less the entries' own sizes and the
// directory's blocks. LinksDir is made if missing, as Nix's store has it.
func (s *Store) RemoveUnusedLinks() (freed uint64, saved int64, err error) {
	if err := unix.Mkdirat(s.storeFd, LinksDir, 0o755); err != nil && err != unix.EEXIST {
		return 0, 0, fmt.Errorf("storefs: making %s: %w", LinksDir, err)
	}
	fd, err := openBeneath(s.storeFd, LinksDir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return 0, 0, fmt.Errorf("storefs: opening %s: %w", LinksDir, err)
	}
	defer unix.Close(fd)
	names, err := readNames(fd, nil, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("storefs: listing %s: %w", LinksDir, err)
	}
	var st unix.Stat_t
	for _, n := range names {
		if unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		if st.Nlink != 1 {
			saved += int64(st.Nlink-2) * st.Size
			continue
		}
		if err := unix.Unlinkat(fd, n, 0); err == nil {
			freed += uint64(st.Size)
		}
	}
	if unix.Fstat(fd, &st) == nil {
		saved -= st.Blocks * 512
	}
	return freed, saved, nil
}

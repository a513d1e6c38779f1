package storefs

import (
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"privnix/nix/storepath"
)

// deleteWorkers is how many store objects DeleteMany removes at once, and how
// many held files the reaper closes at once. Most of an unlink's time is the
// filesystem freeing the inode's blocks when its last reference goes (ext4,
// 2,000 small synced files: unlinks 9 ms, then 118 ms freeing them one at a
// time, about half that four at a time).
const deleteWorkers = 4

// DeleteMany removes the store objects names (store path bases the caller
// has made invalid: the garbage collector) and reports, for each, the bytes
// its removal freed as nix-daemon counts them (the st_size of every
// non-directory with a single link) and the error if it could not be removed.
// An object already gone counts as removed, with 0 bytes.
//
// A file or symlink is unlinked where it is (that is atomic) while an O_PATH
// fd holds its inode: the filesystem frees its blocks when that fd is closed,
// which a reaper does in the background, so the caller does not wait for it.
// The name is gone from the store when DeleteMany returns; only the space
// comes back a moment later (a crash meanwhile leaves an orphan inode, which
// the filesystem frees when it is mounted again). A directory is
// first renamed into a trash directory shared by the call, so that it leaves
// the store at once, and removed from there (Delete's way, without a trash
// directory per object).
func (s *Store) DeleteMany(names []string) (freed []uint64, errs []error) {
	freed, errs = make([]uint64, len(names)), make([]error, len(names))
	held := make([]int, len(names))
	t := &trash{s: s, fd: -1}
	defer t.close()
	parallel(len(names), func(i int) {
		freed[i], held[i], errs[i] = s.deleteOne(names[i], t, strconv.Itoa(i))
	})
	go parallel(len(held), func(i int) {
		if held[i] >= 0 {
			unix.Close(held[i])
		}
	})
	return freed, errs
}

// parallel runs f(0)…f(n-1), deleteWorkers at a time.
func parallel(n int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(deleteWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// deleteOne removes the store object name and returns the bytes freed and,
// for a file or symlink, the fd holding its inode (else -1).
func (s *Store) deleteOne(name string, t *trash, as string) (freed uint64, held int, err error) {
	if _, err := storepath.ParseBase(name); err != nil { // never the staging root or other non-path entries
		return 0, -1, fmt.Errorf("storefs: DeleteMany: %w", err)
	}
	fd, err := openBeneath(s.storeFd, name, unix.O_PATH)
	if err == unix.ENOENT {
		return 0, -1, nil
	}
	if err != nil {
		return 0, -1, fmt.Errorf("storefs: deleting %q: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return 0, -1, fmt.Errorf("storefs: deleting %q: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(s.storeFd, name, 0); err != nil {
			unix.Close(fd)
			return 0, -1, fmt.Errorf("storefs: deleting %q: %w", name, err)
		}
		if st.Nlink == 1 {
			freed = uint64(st.Size)
		}
		return freed, fd, nil
	}
	unix.Close(fd)
	n, err := s.trashDir(name, t, as)
	return n, -1, err
}

// trashDir moves the store directory name into the trash as as and removes
// it there, counting what it frees.
func (s *Store) trashDir(name string, t *trash, as string) (uint64, error) {
	tfd, err := t.open()
	if err != nil {
		return 0, err
	}
	restore, err := writableDir(s.storeFd, name)
	if err != nil {
		return 0, fmt.Errorf("storefs: deleting %q: %w", name, err)
	}
	if err := unix.Renameat2(s.storeFd, name, tfd, as, unix.RENAME_NOREPLACE); err != nil {
		restore()
		return 0, fmt.Errorf("storefs: deleting %q: rename into trash: %w", name, err)
	}
	var n uint64
	if err := removeDir(tfd, as, &n); err != nil {
		return n, fmt.Errorf("storefs: deleting %q: %w", name, err)
	}
	return n, nil
}

// trash is DeleteMany's trash directory, <stagingRoot>/del-<id>, made when
// the first directory needs it.
type trash struct {
	s    *Store
	mu   sync.Mutex
	name string
	fd   int // O_PATH, -1 until made
}

func (t *trash) open() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fd >= 0 {
		return t.fd, nil
	}
	name := "del-" + randomID()
	if err := unix.Mkdirat(t.s.stagingFd, name, 0o700); err != nil {
		return -1, fmt.Errorf("storefs: creating trash: %w", err)
	}
	fd, err := openBeneath(t.s.stagingFd, name, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		removeAll(t.s.stagingFd, name)
		return -1, fmt.Errorf("storefs: opening trash: %w", err)
	}
	t.name, t.fd = name, fd
	return fd, nil
}

// close removes the trash directory: empty unless a removal failed (that
// error was reported); start-up removes whatever is left beneath the
// staging root.
func (t *trash) close() {
	if t.fd >= 0 {
		unix.Close(t.fd)
		removeAll(t.s.stagingFd, t.name)
	}
}

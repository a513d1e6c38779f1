package gc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"privnix/nix/nixbase32"
	"privnix/nix/storepath"
)

// Caps on what RuntimeRoots reads of one process: the rest is ignored.
const (
	maxMapsBytes    = 16 << 20
	maxEnvironBytes = 4 << 20
	maxFDs          = 1 << 16
	maxProcesses    = 1 << 22 // pid_max's ceiling
)

// RuntimeStats counts what RuntimeRoots could not look at.
type RuntimeStats struct {
	Processes  int // processes looked at
	Unreadable int // /proc entries refused (EACCES/EPERM: no CAP_SYS_PTRACE for another uid's process)
}

// RuntimeRoots finds the store paths in use by running processes, as Nix's
// findRuntimeRoots does on Linux (§6.7): the targets of /proc/<pid>/exe, cwd
// and fd/*, the files mapped in /proc/<pid>/maps, store paths mentioned in
// /proc/<pid>/environ, and /proc/sys/kernel/{modprobe,fbsplash,poweroff_cmd}.
//
// Nothing is followed: each /proc/<pid> is opened with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS from an fd of
// procDir ("" = /proc), the magic links are read with readlinkat and never
// opened, and maps and environ are read as bounded text (16 MiB, 4 MiB) in
// which ExtractStorePaths looks for store paths. A process that exits while
// it is read is skipped. Roots are reported with links like
// "/proc/<pid>/fd/3"; validity is not checked here.
//
// Reading another uid's fd, maps, environ and exe needs CAP_SYS_PTRACE: a
// monitor without it misses those roots (counted in Unreadable).
func RuntimeRoots(procDir string, storeDir storepath.Dir) ([]Root, RuntimeStats, error) {
	var stats RuntimeStats
	if procDir == "" {
		procDir = "/proc"
	}
	pfd, err := unix.Open(procDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, stats, fmt.Errorf("gc: opening %s: %w", procDir, err)
	}
	defer unix.Close(pfd)
	names, err := readDirNames(pfd, maxProcesses)
	if err != nil {
		return nil, stats, fmt.Errorf("gc: listing %s: %w", procDir, err)
	}
	rc := &runtimeCollector{storeDir: storeDir, stats: &stats}
	for _, name := range names {
		if _, err := strconv.ParseUint(name, 10, 31); err != nil {
			continue
		}
		dfd, err := openBeneath(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			continue // exited
		}
		stats.Processes++
		rc.process(dfd, procDir+"/"+name)
		unix.Close(dfd)
	}
	for _, f := range []string{"sys/kernel/modprobe", "sys/kernel/fbsplash", "sys/kernel/poweroff_cmd"} {
		data, err := readBounded(pfd, f, unix.PathMax)
		if err != nil {
			continue
		}
		rc.target(procDir+"/"+f, strings.TrimRight(string(data), "\n"))
	}
	return rc.roots, stats, nil
}

type runtimeCollector struct {
	storeDir storepath.Dir
	stats    *RuntimeStats
	roots    []Root
}

func (rc *runtimeCollector) refused(err error) bool {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		rc.stats.Unreadable++
		return true
	}
	return false
}

// target records the store path a link target lies in, if any.
func (rc *runtimeCollector) target(link, target string) {
	name, ok := storeName(rc.storeDir, target)
	if !ok {
		return
	}
	name = strings.TrimSuffix(name, " (deleted)")
	if p, err := storepath.ParseBase(name); err == nil {
		rc.roots = append(rc.roots, Root{Link: link, Path: p, Kind: Runtime})
	}
}

func (rc *runtimeCollector) process(dfd int, dir string) {
	for _, l := range []string{"exe", "cwd"} {
		t, err := readlinkat(dfd, l)
		if err != nil {
			rc.refused(err)
			continue
		}
		rc.target(dir+"/"+l, t)
	}
	if ffd, err := openBeneath(dfd, "fd", unix.O_RDONLY|unix.O_DIRECTORY); err == nil {
		fds, err := readDirNames(ffd, maxFDs)
		if err == nil {
			for _, n := range fds {
				t, err := readlinkat(ffd, n)
				if err != nil {
					rc.refused(err)
					continue
				}
				rc.target(dir+"/fd/"+n, t)
			}
		}
		unix.Close(ffd)
	} else {
		rc.refused(err)
	}
	for _, f := range []struct {
		name string
		max  int64
	}{{"maps", maxMapsBytes}, {"environ", maxEnvironBytes}} {
		data, err := readBounded(dfd, f.name, f.max)
		if err != nil {
			rc.refused(err)
			continue
		}
		seen := map[storepath.Path]bool{}
		for _, p := range ExtractStorePaths(rc.storeDir, data) {
			if !seen[p] {
				seen[p] = true
				rc.roots = append(rc.roots, Root{Link: dir + "/" + f.name, Path: p, Kind: Runtime})
			}
		}
	}
}

// readBounded reads at most max bytes of the file name beneath dirfd.
func readBounded(dirfd int, name string, max int64) ([]byte, error) {
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

// ExtractStorePaths returns every store path "<storeDir>/<32 nix32
// chars>-<name>" that occurs in data, in order of occurrence (duplicates
// kept): the name runs while its characters are store-name characters; what
// does not parse (storepath.ParseBase) is skipped. This is Nix's scan of
// /proc/<pid>/environ, also used on maps.
func ExtractStorePaths(storeDir storepath.Dir, data []byte) []storepath.Path {
	var out []storepath.Path
	prefix := string(storeDir) + "/"
	s := string(data)
	for {
		i := strings.Index(s, prefix)
		if i < 0 {
			return out
		}
		s = s[i+len(prefix):]
		if len(s) < storepath.HashLen+2 || s[storepath.HashLen] != '-' {
			continue
		}
		hashOK := true
		for j := 0; j < storepath.HashLen; j++ {
			if !nixbase32.IsValidChar(s[j]) {
				hashOK = false
				break
			}
		}
		if !hashOK {
			continue
		}
		end := storepath.HashLen + 1
		for end < len(s) && end-storepath.HashLen-1 < storepath.MaxNameLen && isNameChar(s[end]) {
			end++
		}
		if p, err := storepath.ParseBase(s[:end]); err == nil {
			out = append(out, p)
			s = s[end:]
		}
	}
}

func isNameChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("+-._?=", c) >= 0
}

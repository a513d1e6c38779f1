// Package narfs converts between file trees and NARs through directory file descriptors, never following symlinks.
package narfs

import (
	"io"

	"privnix/internal/narfs/dumpfs"
)

// MaxDepth is the deepest directory nesting Dump and Restore accept.
const MaxDepth = dumpfs.MaxDepth

// Errors that say why a tree was refused.
var (
	ErrUnsupportedType = dumpfs.ErrUnsupportedType
	ErrTooDeep         = dumpfs.ErrTooDeep
	ErrChanged         = dumpfs.ErrChanged
)

// Dump serialises the file, symlink or directory `name` beneath dirfd as a NAR.
// It never follows a symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS,
// O_NOFOLLOW), types entries by fstat of the opened fd, and refuses special files.
// Code that must not link the NAR reader (the monitor) calls dumpfs.Dump directly.
func Dump(w io.Writer, dirfd int, name string) error { return dumpfs.Dump(w, dirfd, name) }

// DumpPath serialises the object at path (a symlink itself, not its target)
// as a NAR; symlinks in the leading directories are followed, as nix-store --dump does.
func DumpPath(w io.Writer, path string) error { return dumpfs.DumpPath(w, path) }

func openBeneath(dirfd int, name string, flags int) (int, error) {
	return dumpfs.OpenBeneath(dirfd, name, flags)
}

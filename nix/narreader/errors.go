package narreader

import (
	"errors"
	"fmt"
	"io"
)

// Each refusal wraps exactly one of these sentinels (test with errors.Is).
var (
	ErrMagic                   = errors.New("not a NAR (bad magic)")
	ErrUnexpectedToken         = errors.New("unexpected token")
	ErrTokenTooLong            = errors.New("token too long")
	ErrUnknownType             = errors.New("unknown node type")
	ErrMissingContents         = errors.New("regular file without contents")
	ErrExecutableValue         = errors.New("executable marker with a value")
	ErrExecutableAfterContents = errors.New("executable marker after contents")
	ErrEmptyName               = errors.New("empty entry name")
	ErrDotName                 = errors.New(`entry name "." or ".."`)
	ErrSlashName               = errors.New("entry name contains '/'")
	ErrNULName                 = errors.New("entry name contains NUL")
	ErrNameTooLong             = errors.New("entry name too long")
	ErrNotSorted               = errors.New("NAR directory is not sorted")
	ErrDuplicateEntry          = errors.New("duplicate entry name")
	ErrEmptyTarget             = errors.New("empty symlink target")
	ErrNULTarget               = errors.New("symlink target contains NUL")
	ErrTargetTooLong           = errors.New("symlink target too long")
	ErrPadding                 = errors.New("non-zero padding")
	ErrTruncated               = fmt.Errorf("NAR truncated: %w", io.ErrUnexpectedEOF)
	ErrTooDeep                 = errors.New("directories nested too deep")
	ErrTooManyEntries          = errors.New("too many entries")
	ErrTooLarge                = errors.New("NAR too large")
)

// Error is a refusal of the archive at a byte offset.
type Error struct {
	Offset uint64 // archive bytes consumed when the refusal was decided
	Err    error  // one of the Err* sentinels
	Detail string // what exactly was refused
}

func (e *Error) Error() string {
	return fmt.Sprintf("nar refused at byte %d: %v: %s", e.Offset, e.Err, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

package frontend

import (
	"context"
	"errors"
	"io"

	"privnix/frontend/wire"
)

// Backend carries out the store operations of one connection (the monitor, via ipc).
// Every method is called during work (after the operation's arguments were read and
// checked), may log to the client through LoggerFrom(ctx), and returns typed results
// or an error: an *Error is sent to the client as is, ErrNotImplemented becomes
// "operation '<name>' is not yet implemented by privnix", anything else is logged and
// the client gets a short generic error.
type Backend interface {
	// SetOptions applies the client's settings; the warnings are shown to the client.
	// Overrides arrive unfiltered: the trust rules of §7.3 are the Backend's (policy's) job.
	SetOptions(ctx context.Context, opts wire.ClientOptions) (warnings []string, err error)

	IsValidPath(ctx context.Context, path string) (bool, error)
	QueryValidPaths(ctx context.Context, paths []string, substitute bool) ([]string, error)
	// QueryPathInfo returns nil, nil when the path is not valid.
	QueryPathInfo(ctx context.Context, path string) (*wire.UnkeyedValidPathInfo, error)
	QueryReferrers(ctx context.Context, path string) ([]string, error)
	// QueryPathFromHashPart returns "" when no valid path has that hash part.
	QueryPathFromHashPart(ctx context.Context, hashPart string) (string, error)
	QueryAllValidPaths(ctx context.Context) ([]string, error)
	QueryValidDerivers(ctx context.Context, path string) ([]string, error)
	// QueryDerivationOutputMap maps output names to paths ("" = not known).
	QueryDerivationOutputMap(ctx context.Context, drvPath string) (map[string]string, error)
	QuerySubstitutablePaths(ctx context.Context, paths []string) ([]string, error)
	// QuerySubstitutablePathInfos gets path → content address ("" = none) and returns infos for the substitutable ones.
	QuerySubstitutablePathInfos(ctx context.Context, paths map[string]string) (map[string]SubstitutablePathInfo, error)
	QueryMissing(ctx context.Context, targets []wire.DerivedPath) (Missing, error)

	AddTempRoot(ctx context.Context, path string) error
	AddIndirectRoot(ctx context.Context, symlink string) error
	SyncWithGC(ctx context.Context) error
	// CollectGarbage runs one collection (op 20); req.IgnoreLiveness is
	// refused before the call.
	CollectGarbage(ctx context.Context, req GCRequest) (GCResult, error)
	// FindRoots lists the GC roots as (link, store path) pairs (op 14); one
	// link may name several paths ("{censored}").
	FindRoots(ctx context.Context) ([]GCRoot, error)
	// VerifyStore checks the store (op 35; repair by untrusted clients is
	// refused before the call) and reports whether errors remain.
	VerifyStore(ctx context.Context, checkContents, repair bool) (errors bool, err error)
	// OptimiseStore hard-links identical files (op 34).
	OptimiseStore(ctx context.Context) error
	AddSignatures(ctx context.Context, path string, sigs []string) error

	// AddTextToStore writes a text file (a .drv) with references; it returns the store path.
	AddTextToStore(ctx context.Context, name, text string, refs []string) (string, error)
	// AddToStore adds content-addressed data and returns the registered path's info.
	AddToStore(ctx context.Context, req AddToStoreRequest, data io.Reader) (wire.ValidPathInfo, error)
	// AddToStoreNar imports a NAR with metadata the client claims.
	AddToStoreNar(ctx context.Context, req AddToStoreNarRequest, nar io.Reader) error
	// BuildPaths realises targets (BuildPaths 9 and BuildPathsWithResults 46):
	// one result per target, in order. A failure to realise one target is a
	// result, not an error.
	BuildPaths(ctx context.Context, targets []wire.DerivedPath, mode uint64) ([]wire.KeyedBuildResult, error)
	// BuildDerivation builds a derivation handed over inline (op 36); a
	// failed build is a result, not an error.
	BuildDerivation(ctx context.Context, drvPath string, d BasicDerivation, mode uint64) (wire.BuildResult, error)

	// NarFromPath writes the path's NAR serialisation to w.
	NarFromPath(ctx context.Context, path string, w io.Writer) error
}

// AddToStoreRequest is a content-addressed add (op 7).
type AddToStoreRequest struct {
	Name       string
	Method     string // "text", "flat" or "nar" (wire.ContentAddress.Method)
	Algo       string // md5, sha1, sha256, sha512
	References []string
	Repair     bool
	// FlatInNAR: the data is a NAR holding one regular file even though Method is
	// "flat" (what clients before 1.25 send); the file's contents are what is added.
	FlatInNAR bool
}

// AddToStoreNarRequest is an import with claimed metadata (op 39 and each entry of op 44).
type AddToStoreNarRequest struct {
	Info          wire.ValidPathInfo
	Repair        bool
	DontCheckSigs bool // already forced false for untrusted clients
}

// GCRequest is a CollectGarbage (op 20). Actions are Nix's: 0 return live,
// 1 return dead, 2 delete dead, 3 delete Paths.
type GCRequest struct {
	Action         uint64
	Paths          []string // action 3
	IgnoreLiveness bool
	MaxFreed       uint64
}

// GCResult answers CollectGarbage: the paths deleted (or listed) and the
// bytes freed.
type GCResult struct {
	Paths      []string
	BytesFreed uint64
}

// GCRoot is one GC root: the link (symlink, /proc entry, "{censored}",
// "{temp:<pid>}") and the store path it keeps alive.
type GCRoot struct {
	Link, Path string
}

// SubstitutablePathInfo describes a path a substituter could provide.
type SubstitutablePathInfo struct {
	Deriver      string
	References   []string
	DownloadSize uint64
	NarSize      uint64
}

// Missing is the answer of QueryMissing.
type Missing struct {
	WillBuild, WillSubstitute, Unknown []string
	DownloadSize, NarSize              uint64
}

// Error is a refusal or failure whose text the client prints as Nix would.
// Status is the exit status old (< 1.26) clients use; 0 means 1.
type Error struct {
	Msg    string
	Status uint
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an *Error with status 1.
func Errorf(format string, args ...any) *Error {
	return &Error{Msg: sprintf(format, args...), Status: 1}
}

// ErrNotImplemented is returned by Backend methods privnix cannot do yet.
var ErrNotImplemented = errors.New("not yet implemented by privnix")

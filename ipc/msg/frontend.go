//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import "fmt"

// The frontend channel: one per client connection, between that connection's
// frontend and the monitor. The monitor answers each request from the
// identity it recorded for the channel (HelloOK), never from the request.
//
//	frontend                                   monitor
//	  │ ── Hello ──────────────────────────────▶ │
//	  │ ◀──────────────────────────── HelloOK ── │  Uid, Trusted, StoreDir, ...
//	  │ ── IsValidPath{Path} ──────────────────▶ │
//	  │ ◀──────────────────────────── Bool{V} ── │
//	  │ ── QueryPathInfo{Path} ────────────────▶ │
//	  │ ◀──────── PathInfo | Error(NotValid) ─── │
//	  │ ── QueryPaths{Op, Paths, ...} ─────────▶ │
//	  │ ◀──────────── Paths{More: true} ... ──── │  zero or more, when the answer
//	  │ ◀──────────── Paths{More: false} ─────── │  does not fit in one frame
//	  │ ── AddTempRoot{Path} ──────────────────▶ │  root lives as long as the connection
//	  │ ◀───────────────────────────────── OK ── │
//
// Any request may also be answered with Error.
const (
	KindIsValidPath   Kind = 0x0200
	KindBool          Kind = 0x0201
	KindQueryPathInfo Kind = 0x0202
	KindPathInfo      Kind = 0x0203
	KindQueryPaths    Kind = 0x0204
	KindPaths         Kind = 0x0205
	KindAddTempRoot   Kind = 0x0206 // answered with OK
)

// IsValidPath asks whether Path is valid.
type IsValidPath struct {
	_msgpack struct{} `msgpack:",as_array"`
	Path     StorePath
}

func (IsValidPath) Kind() Kind        { return KindIsValidPath }
func (m IsValidPath) Validate() error { return field("Path", m.Path.Validate()) }

// Bool is a yes/no answer.
type Bool struct {
	_msgpack struct{} `msgpack:",as_array"`
	V        bool
}

func (Bool) Kind() Kind      { return KindBool }
func (Bool) Validate() error { return nil }

// QueryPathInfo asks for Path's registration; a path that is not valid gets
// Error{Class: ClassNotValid}.
type QueryPathInfo struct {
	_msgpack struct{} `msgpack:",as_array"`
	Path     StorePath
}

func (QueryPathInfo) Kind() Kind        { return KindQueryPathInfo }
func (m QueryPathInfo) Validate() error { return field("Path", m.Path.Validate()) }

// PathInfo is a valid path's registration, as Nix's ValidPathInfo.
type PathInfo struct {
	_msgpack         struct{} `msgpack:",as_array"`
	Path             StorePath
	Deriver          StorePath // empty if unknown
	NarHash          string    // "sha256:" + nix32 or base16
	References       StorePaths
	RegistrationTime int64 // Unix seconds, ≥ 0
	NarSize          uint64
	Ultimate         bool
	Sigs             Strings // at most MaxSigs, each "<key name>:<base64>"
	CA               string  // empty, or a content address
}

func (PathInfo) Kind() Kind { return KindPathInfo }
func (m PathInfo) Validate() error {
	if m.RegistrationTime < 0 {
		return fmt.Errorf("registration time %d < 0", m.RegistrationTime)
	}
	var ca error
	if m.CA != "" {
		ca = ValidCA(m.CA)
	}
	return firstErr(
		field("Path", m.Path.Validate()),
		field("Deriver", validOptPath(m.Deriver)),
		field("NarHash", ValidHash(m.NarHash, "sha256")),
		field("References", m.References.Validate()),
		field("Sigs", m.Sigs.Validate(MaxSigs, ValidSig)),
		field("CA", ca),
	)
}

// QueryPaths operations.
const (
	PathsValid         uint64 = 1 // the valid ones among Paths (Substitute: also substitutable ones)
	PathsReferrers     uint64 = 2 // the paths referring to Paths[0]
	PathsValidDerivers uint64 = 3 // the valid derivations that produce Paths[0]
	PathsByHashPart    uint64 = 4 // the valid path whose hash part is HashPart (empty if none)
	PathsAll           uint64 = 5 // every valid path
)

// QueryPaths asks for a set of paths.
type QueryPaths struct {
	_msgpack   struct{} `msgpack:",as_array"`
	Op         uint64
	Paths      StorePaths
	HashPart   string // PathsByHashPart only
	Substitute bool   // PathsValid only
}

func (QueryPaths) Kind() Kind { return KindQueryPaths }
func (m QueryPaths) Validate() error {
	var wantPaths string // "any", "one", "none"
	switch m.Op {
	case PathsValid:
		wantPaths = "any"
	case PathsReferrers, PathsValidDerivers:
		wantPaths = "one"
	case PathsByHashPart, PathsAll:
		wantPaths = "none"
	default:
		return fmt.Errorf("op %d out of range", m.Op)
	}
	switch {
	case wantPaths == "one" && len(m.Paths) != 1, wantPaths == "none" && len(m.Paths) != 0:
		return fmt.Errorf("op %d with %d paths", m.Op, len(m.Paths))
	case m.Op == PathsByHashPart:
		if err := ValidHashPart(m.HashPart); err != nil {
			return field("HashPart", err)
		}
	case m.HashPart != "":
		return fmt.Errorf("hash part given for op %d", m.Op)
	}
	if m.Substitute && m.Op != PathsValid {
		return fmt.Errorf("substitute given for op %d", m.Op)
	}
	return field("Paths", m.Paths.Validate())
}

// Paths answers QueryPaths. An answer that does not fit in one frame is sent
// as several Paths, all but the last with More set.
type Paths struct {
	_msgpack struct{} `msgpack:",as_array"`
	Paths    StorePaths
	More     bool
}

func (Paths) Kind() Kind        { return KindPaths }
func (m Paths) Validate() error { return field("Paths", m.Paths.Validate()) }

// AddTempRoot protects Path from garbage collection until the connection
// ends. Answered with OK.
type AddTempRoot struct {
	_msgpack struct{} `msgpack:",as_array"`
	Path     StorePath
}

func (AddTempRoot) Kind() Kind        { return KindAddTempRoot }
func (m AddTempRoot) Validate() error { return field("Path", m.Path.Validate()) }

var frontendTable = []Spec{
	row[IsValidPath](0),
	row[Bool](0),
	row[QueryPathInfo](0),
	row[PathInfo](0),
	row[QueryPaths](0),
	row[Paths](0),
	row[AddTempRoot](0),
}

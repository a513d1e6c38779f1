//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import (
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Garbage collection (worker ops 20 CollectGarbage and 14 FindRoots).
//
//	frontend                                          monitor
//	  │ ── CollectGarbage{Action, Paths, …} ────────────▶ │  one collection at a time
//	  │ ◀──────── GCResult{More} … GCResult{BytesFreed} ─ │  | Error
//	  │ ── FindRoots{} ─────────────────────────────────▶ │
//	  │ ◀──────────────────── Roots{More} … Roots ─────── │  | Error
//
// Long answers are split over several frames: every frame but the last has
// More set; BytesFreed is on the last GCResult.
const (
	// frontend channel (0x0240–0x025f)
	KindCollectGarbage Kind = 0x0240 // answered with GCResult frames or Error
	KindGCResult       Kind = 0x0241
	KindFindRoots      Kind = 0x0242 // answered with Roots frames or Error
	KindRoots          Kind = 0x0243
)

// CollectGarbage actions (Nix's GCOptions::GCAction, the worker protocol's numbers).
const (
	GCReturnLive     uint64 = 0 // --print-live
	GCReturnDead     uint64 = 1 // --print-dead
	GCDeleteDead     uint64 = 2 // --gc
	GCDeleteSpecific uint64 = 3 // --delete PATHS
)

// CollectGarbage runs one collection. Paths are for GCDeleteSpecific only;
// a client naming more than fit one frame is served by several requests.
type CollectGarbage struct {
	_msgpack       struct{} `msgpack:",as_array"`
	Action         uint64
	Paths          StorePaths
	IgnoreLiveness bool // always refused, as by nix-daemon
	MaxFreed       uint64
}

func (CollectGarbage) Kind() Kind { return KindCollectGarbage }
func (m CollectGarbage) Validate() error {
	if m.Action > GCDeleteSpecific {
		return fmt.Errorf("action %d out of range", m.Action)
	}
	if m.Action != GCDeleteSpecific && len(m.Paths) != 0 {
		return fmt.Errorf("action %d with %d paths", m.Action, len(m.Paths))
	}
	return field("Paths", m.Paths.Validate())
}

// GCResult answers CollectGarbage: the paths deleted (or, for
// GCReturnLive and GCReturnDead, listed); BytesFreed on the last frame.
type GCResult struct {
	_msgpack   struct{} `msgpack:",as_array"`
	Paths      StorePaths
	BytesFreed uint64
	More       bool
	// LinksSaved: what hard linking through <store>/.links still saves once
	// unused links are gone (may be negative), for Nix's "note: currently
	// hard linking saves …" after a deleting collection.
	LinksSaved int64
}

func (GCResult) Kind() Kind { return KindGCResult }
func (m GCResult) Validate() error {
	if m.More && (m.BytesFreed != 0 || m.LinksSaved != 0) {
		return fmt.Errorf("bytes freed on a frame that is not the last")
	}
	return field("Paths", m.Paths.Validate())
}

// FindRoots asks for every GC root: permanent, indirect, runtime and
// temporary, as the client's trust allows it to see them.
type FindRoots struct {
	_msgpack struct{} `msgpack:",as_array"`
}

func (FindRoots) Kind() Kind      { return KindFindRoots }
func (FindRoots) Validate() error { return nil }

// Root is one GC root: Link names Path. Link is an absolute file name (a
// symlink, a /proc entry) or "{censored}", "{temp:…}".
type Root struct {
	_msgpack struct{} `msgpack:",as_array"`
	Link     string
	Path     StorePath
}

// Validate checks the link's length and content and the path.
func (r Root) Validate() error {
	return firstErr(field("Link", validLink(r.Link)), field("Path", r.Path.Validate()))
}

func validLink(l string) error {
	switch {
	case len(l) == 0 || len(l) > MaxLinkPath:
		return fmt.Errorf("length %d", len(l))
	case strings.IndexByte(l, 0) >= 0:
		return fmt.Errorf("contains NUL")
	case l[0] != '/' && l[0] != '{':
		return fmt.Errorf("%q is neither absolute nor a {placeholder}", l)
	}
	return nil
}

// MaxRoots bounds one Roots frame's list (a frame usually binds first).
const MaxRoots = 4096

// RootList is a list of at most MaxRoots roots.
type RootList []Root

// DecodeMsgpack implements msgpack.CustomDecoder.
func (l *RootList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxRoots, (*[]Root)(l))
}

// Roots answers FindRoots.
type Roots struct {
	_msgpack struct{} `msgpack:",as_array"`
	Roots    RootList
	More     bool
}

func (Roots) Kind() Kind { return KindRoots }
func (m Roots) Validate() error {
	if len(m.Roots) > MaxRoots {
		return fmt.Errorf("%d roots, at most %d", len(m.Roots), MaxRoots)
	}
	for i, r := range m.Roots {
		if err := r.Validate(); err != nil {
			return field(fmt.Sprintf("Roots[%d]", i), err)
		}
	}
	return nil
}

var gcTable = []Spec{
	row[CollectGarbage](0),
	row[GCResult](0),
	row[FindRoots](0),
	row[Roots](0),
}

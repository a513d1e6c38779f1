//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Batched reads on the frontend channel, and the store generation page that
// tells a frontend whether what it read is still current (ipc/genpage).
//
//	frontend                                   monitor
//	  │ ── OpenGeneration{} ───────────────────▶ │
//	  │ ◀─────────────── Generation + memfd ──── │  sealed, read-only for the frontend
//	  │ ── QueryPathInfos{Paths, Closure} ─────▶ │
//	  │ ◀──────── PathInfos{More: true} ... ──── │  zero or more, when the answer
//	  │ ◀──────── PathInfos{More: false} ─────── │  does not fit in one frame
//	  │ ── QueryReferrers{Paths, Closure} ─────▶ │
//	  │ ◀──────── Referrers{More: true} ... ──── │
//	  │ ◀──────── Referrers{More: false} ─────── │
//
// Any request may also be answered with Error.
const (
	KindOpenGeneration Kind = 0x0208 // answered with Generation
	KindGeneration     Kind = 0x0209
	KindQueryPathInfos Kind = 0x020a // answered with PathInfos frames
	KindPathInfos      Kind = 0x020b
	KindQueryReferrers Kind = 0x020c // answered with Referrers frames
	KindReferrers      Kind = 0x020d
)

// MaxPathInfos bounds one PathInfos frame's list and QueryPathInfos' Closure.
const MaxPathInfos = 1024

// OpenGeneration asks for the store generation page.
type OpenGeneration struct {
	_msgpack struct{} `msgpack:",as_array"`
}

func (OpenGeneration) Kind() Kind      { return KindOpenGeneration }
func (OpenGeneration) Validate() error { return nil }

// Generation carries the store generation page (a sealed memfd) as its fd.
type Generation struct {
	_msgpack struct{} `msgpack:",as_array"`
}

func (Generation) Kind() Kind      { return KindGeneration }
func (Generation) Validate() error { return nil }

// QueryPathInfos asks for the registrations of the valid ones among Paths,
// then of up to Closure more valid paths from their references' closure
// (breadth first, each path once).
type QueryPathInfos struct {
	_msgpack struct{} `msgpack:",as_array"`
	Paths    StorePaths
	Closure  uint64
}

func (QueryPathInfos) Kind() Kind { return KindQueryPathInfos }
func (m QueryPathInfos) Validate() error {
	if len(m.Paths) == 0 || len(m.Paths) > MaxPathInfos {
		return fmt.Errorf("%d paths, want 1 to %d", len(m.Paths), MaxPathInfos)
	}
	if m.Closure > MaxPathInfos {
		return fmt.Errorf("closure of %d paths, at most %d", m.Closure, MaxPathInfos)
	}
	return field("Paths", m.Paths.Validate())
}

// PathInfoList is a list of at most MaxPathInfos registrations.
type PathInfoList []PathInfo

// DecodeMsgpack implements msgpack.CustomDecoder.
func (l *PathInfoList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxPathInfos, (*[]PathInfo)(l))
}

// PathInfos answers QueryPathInfos. An answer that does not fit in one frame
// is sent as several PathInfos, all but the last with More set.
type PathInfos struct {
	_msgpack struct{} `msgpack:",as_array"`
	Infos    PathInfoList
	More     bool
}

func (PathInfos) Kind() Kind { return KindPathInfos }
func (m PathInfos) Validate() error {
	if len(m.Infos) > MaxPathInfos {
		return fmt.Errorf("%d infos, at most %d", len(m.Infos), MaxPathInfos)
	}
	for i, info := range m.Infos {
		if err := info.Validate(); err != nil {
			return fmt.Errorf("infos[%d]: %w", i, err)
		}
	}
	return nil
}

// QueryReferrers asks for the referrers of each of Paths, then of up to
// Closure more paths of their referrers' closure (breadth first, each path
// once).
type QueryReferrers struct {
	_msgpack struct{} `msgpack:",as_array"`
	Paths    StorePaths
	Closure  uint64
}

func (QueryReferrers) Kind() Kind { return KindQueryReferrers }
func (m QueryReferrers) Validate() error {
	if len(m.Paths) == 0 || len(m.Paths) > MaxPathInfos {
		return fmt.Errorf("%d paths, want 1 to %d", len(m.Paths), MaxPathInfos)
	}
	if m.Closure > MaxPathInfos {
		return fmt.Errorf("closure of %d paths, at most %d", m.Closure, MaxPathInfos)
	}
	return field("Paths", m.Paths.Validate())
}

// ReferrersOf is one path's valid referrers. A list too long for one frame
// continues in the next entries for the same path.
type ReferrersOf struct {
	_msgpack  struct{} `msgpack:",as_array"`
	Path      StorePath
	Referrers StorePaths
}

// ReferrersList is a list of at most MaxPathInfos entries.
type ReferrersList []ReferrersOf

// DecodeMsgpack implements msgpack.CustomDecoder.
func (l *ReferrersList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxPathInfos, (*[]ReferrersOf)(l))
}

// Referrers answers QueryReferrers, in frames like PathInfos.
type Referrers struct {
	_msgpack struct{} `msgpack:",as_array"`
	Entries  ReferrersList
	More     bool
}

func (Referrers) Kind() Kind { return KindReferrers }
func (m Referrers) Validate() error {
	if len(m.Entries) > MaxPathInfos {
		return fmt.Errorf("%d entries, at most %d", len(m.Entries), MaxPathInfos)
	}
	for i, e := range m.Entries {
		if err := firstErr(field("Path", e.Path.Validate()), field("Referrers", e.Referrers.Validate())); err != nil {
			return fmt.Errorf("entries[%d]: %w", i, err)
		}
	}
	return nil
}

var batchTable = []Spec{
	row[OpenGeneration](0),
	row[Generation](1),
	row[QueryPathInfos](0),
	row[PathInfos](0),
	row[QueryReferrers](0),
	row[Referrers](0),
}

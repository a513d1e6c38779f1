//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Store maintenance (worker ops 35 VerifyStore and 34 OptimiseStore).
//
//	frontend                                          monitor
//	  │ ── VerifyStore{CheckContents, Repair} ──────────▶ │  with the GC lock held
//	  │ ◀────────── Verified{More} … Verified{Errors} ─── │  | Error
//	  │ ── OptimiseStore{} ─────────────────────────────▶ │
//	  │ ◀──────────────────────────────────── Optimised ─ │  | Error
//
// The monitor reports facts (Findings); the frontend prints them in Nix's
// words, in order. Every frame of a long answer but the last has More set;
// Errors is on the last.
const (
	// frontend channel (0x0248–0x024f)
	KindVerifyStore   Kind = 0x0248 // answered with Verified frames or Error
	KindVerified      Kind = 0x0249
	KindOptimiseStore Kind = 0x024a // answered with Optimised or Error
	KindOptimised     Kind = 0x024b
)

// VerifyStore checks that every valid path exists and, with CheckContents,
// that its NAR hash is the registered one. Repair is for trusted users.
type VerifyStore struct {
	_msgpack      struct{} `msgpack:",as_array"`
	CheckContents bool
	Repair        bool
}

func (VerifyStore) Kind() Kind      { return KindVerifyStore }
func (VerifyStore) Validate() error { return nil }

// What a Finding says (Nix 2.8's texts are the frontend's).
const (
	FoundVanished         uint64 = 1 // Path is gone from the store; it was made invalid
	FoundVanishedReferred uint64 = 2 // Path is gone but has valid referrers; still valid
	FoundModified         uint64 = 3 // Path's NAR hash is Got, not the registered Expected
	FoundCannotRepair     uint64 = 4 // Path could not be repaired
	FoundLinkModified     uint64 = 5 // <store>/.links/Link hashes to Got (bare nix32), not its name
	FoundLinkRemoved      uint64 = 6 // that link was removed (repair)
	FoundUnreadable       uint64 = 7 // Path could not be read (Got: why)
	FoundSubstituting     uint64 = 8 // repair: Path is fetched again (Got: the "copying path" line)
	FoundWarning          uint64 = 9 // repair: a substituter's warning about Path (Got: its text)
	maxFinding                   = FoundWarning
)

// Finding is one fact VerifyStore found, in the order Nix prints them.
type Finding struct {
	_msgpack struct{} `msgpack:",as_array"`
	What     uint64
	Path     StorePath // empty for link findings
	Link     string    // a .links entry's name (52 nix32 characters)
	Expected string    // "sha256:<nix32>"
	Got      string    // "sha256:<nix32>", or the reason for FoundUnreadable
}

// Validate checks the kind and the fields it uses.
func (f Finding) Validate() error {
	switch {
	case f.What == 0 || f.What > maxFinding:
		return fmt.Errorf("finding %d out of range", f.What)
	case f.What == FoundLinkModified || f.What == FoundLinkRemoved:
		if err := ValidHash("sha256:"+f.Link, "sha256"); err != nil || len(f.Link) != 52 {
			return field("Link", err)
		}
	default:
		if err := f.Path.Validate(); err != nil {
			return field("Path", err)
		}
	}
	return firstErr(field("Expected", MaxLen(f.Expected, MaxShort)), field("Got", Printable(f.Got, MaxText)))
}

// MaxFindings bounds one Verified frame's list.
const MaxFindings = 1024

// FindingList is a list of at most MaxFindings findings.
type FindingList []Finding

// DecodeMsgpack implements msgpack.CustomDecoder.
func (l *FindingList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxFindings, (*[]Finding)(l))
}

// Verified answers VerifyStore: Errors says that not every problem was
// fixed (the worker protocol's answer).
type Verified struct {
	_msgpack struct{} `msgpack:",as_array"`
	Findings FindingList
	Errors   bool
	More     bool
}

func (Verified) Kind() Kind { return KindVerified }
func (m Verified) Validate() error {
	if len(m.Findings) > MaxFindings {
		return fmt.Errorf("%d findings, at most %d", len(m.Findings), MaxFindings)
	}
	for i, f := range m.Findings {
		if err := f.Validate(); err != nil {
			return field(fmt.Sprintf("Findings[%d]", i), err)
		}
	}
	return nil
}

// OptimiseStore hard-links identical files of the store through
// <store>/.links.
type OptimiseStore struct {
	_msgpack struct{} `msgpack:",as_array"`
}

func (OptimiseStore) Kind() Kind      { return KindOptimiseStore }
func (OptimiseStore) Validate() error { return nil }

// Optimised answers OptimiseStore: how many files were replaced by links
// and the bytes that freed (Nix's "%.2f MiB freed by hard-linking %d files").
type Optimised struct {
	_msgpack    struct{} `msgpack:",as_array"`
	FilesLinked uint64
	BytesFreed  uint64
}

func (Optimised) Kind() Kind      { return KindOptimised }
func (Optimised) Validate() error { return nil }

var maintTable = []Spec{
	row[VerifyStore](0),
	row[Verified](0),
	row[OptimiseStore](0),
	row[Optimised](0),
}

//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection
package msg

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// A client's SetOptions: the frontend parses it, the monitor decides which
// overrides the connection gets (policy.FilterOverrides) and answers the
// warnings the client should see.
//
//	frontend                                   monitor
//	  │ ── SetOptions{Overrides, MaxJobs, …} ──▶ │  policy: trusted users get all
//	  │ ◀──────────────────── Warnings{Texts} ── │
const (
	KindSetOptions Kind = 0x0280 // answered with Warnings
	KindWarnings   Kind = 0x0281
)

// MaxOverrides bounds the overrides of one SetOptions.
const MaxOverrides = 1024

// Override is one setting a client asked for.
type Override struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Value    string
}

// Validate bounds both strings.
func (o Override) Validate() error {
	return firstErr(field("Name", Printable(o.Name, MaxShort)), field("Value", MaxLen(o.Value, MaxText)))
}

// Overrides is a bounded list of Override.
type Overrides []Override

// DecodeMsgpack implements msgpack.CustomDecoder.
func (o *Overrides) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxOverrides, (*[]Override)(o))
}

// SetOptions carries the client's dedicated fields and its overrides.
type SetOptions struct {
	_msgpack   struct{} `msgpack:",as_array"`
	Overrides  Overrides
	MaxJobs    uint64
	Cores      uint64
	KeepGoing  bool
	KeepFailed bool
	Fallback   bool
	MaxSilent  uint64 // seconds
	Substitute bool   // the client's useSubstitutes (substitute), applied for everyone as nix-daemon does
}

func (SetOptions) Kind() Kind { return KindSetOptions }
func (m SetOptions) Validate() error {
	if len(m.Overrides) > MaxOverrides {
		return fmt.Errorf("%d overrides, at most %d", len(m.Overrides), MaxOverrides)
	}
	for i, o := range m.Overrides {
		if err := o.Validate(); err != nil {
			return fmt.Errorf("override %d: %w", i, err)
		}
	}
	if m.MaxJobs > 1<<20 || m.Cores > 1<<20 || m.MaxSilent > 1<<40 {
		return fmt.Errorf("max jobs %d, cores %d or max silent time %d out of range", m.MaxJobs, m.Cores, m.MaxSilent)
	}
	return nil
}

// Warnings answers SetOptions with what the client should be told.
type Warnings struct {
	_msgpack struct{} `msgpack:",as_array"`
	Texts    Strings
}

func (Warnings) Kind() Kind { return KindWarnings }
func (m Warnings) Validate() error {
	return field("Texts", m.Texts.Validate(MaxStrings, func(s string) error { return MaxLen(s, MaxText) }))
}

var optionsTable = []Spec{
	row[SetOptions](0),
	row[Warnings](0),
}

//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// The log channel: each child has a channel of its own for logs, so a flood
// of logs never delays its requests. Logs are fire-and-forget; the monitor
// stamps them with the child's role and pid, rate-limits them and logs the
// strings only as escaped attribute values.
//
//	child                                 monitor
//	  │ ── Log ───────────────────────────▶ │  no answer
//	  │ ── Log ───────────────────────────▶ │
const (
	KindLog Kind = 0x0100
)

// Nix's verbosity levels, as Log.Level.
const (
	LevelError     uint64 = 0
	LevelWarn      uint64 = 1
	LevelNotice    uint64 = 2
	LevelInfo      uint64 = 3
	LevelTalkative uint64 = 4
	LevelChatty    uint64 = 5
	LevelDebug     uint64 = 6
	LevelVomit     uint64 = 7
	MaxLevel              = LevelVomit
)

// Limits on a Log's attributes.
const (
	MaxAttrs     = 16
	MaxAttrKey   = 64
	MaxAttrValue = 1 << 10
)

// Attr is one key/value pair of a Log.
type Attr struct {
	_msgpack struct{} `msgpack:",as_array"`
	Key      string   // 1..MaxAttrKey of [A-Za-z0-9_.-]
	Value    string   // at most MaxAttrValue bytes, any bytes
}

// Validate checks the key's characters and both lengths.
func (a Attr) Validate() error {
	if a.Key == "" || len(a.Key) > MaxAttrKey {
		return fmt.Errorf("key of %d bytes, want 1..%d", len(a.Key), MaxAttrKey)
	}
	for i := 0; i < len(a.Key); i++ {
		c := a.Key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("key %q contains %q", a.Key, c)
		}
	}
	return field(a.Key, MaxLen(a.Value, MaxAttrValue))
}

// Attrs is a list of at most MaxAttrs attributes.
type Attrs []Attr

// DecodeMsgpack implements msgpack.CustomDecoder.
func (a *Attrs) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxAttrs, (*[]Attr)(a))
}

// Log is one log record from a child.
type Log struct {
	_msgpack struct{} `msgpack:",as_array"`
	Level    uint64   // LevelError..LevelVomit
	Msg      string   // at most MaxText bytes, any bytes
	Attrs    Attrs
}

func (Log) Kind() Kind { return KindLog }
func (m Log) Validate() error {
	if m.Level > MaxLevel {
		return fmt.Errorf("level %d out of range", m.Level)
	}
	if err := MaxLen(m.Msg, MaxText); err != nil {
		return field("Msg", err)
	}
	if len(m.Attrs) > MaxAttrs {
		return fmt.Errorf("%d attrs, at most %d", len(m.Attrs), MaxAttrs)
	}
	for i, a := range m.Attrs {
		if err := a.Validate(); err != nil {
			return fmt.Errorf("attrs[%d]: %w", i, err)
		}
	}
	return nil
}

var logTable = []Spec{
	row[Log](0),
}

//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import "fmt"

// Messages every channel uses. Every child's first message is Hello; the
// monitor answers HelloOK with the session it recorded for that child (from
// the spawn record and SO_PEERCRED, never from anything the child said), or
// with Error and closes the channel.
//
//	child                                 monitor
//	  │ ── Hello ─────────────────────────▶ │  first message only
//	  │ ◀───────────────────── HelloOK ──── │  the session
//	  │ ── request ───────────────────────▶ │
//	  │ ◀─────────────── answer | Error ─── │  exactly one answer per request
const (
	KindError   Kind = 0x0001 // answer to any request
	KindOK      Kind = 0x0003 // answer to any request that returns nothing
	KindHello   Kind = 0x0010
	KindHelloOK Kind = 0x0011
)

// Error classes: what went wrong, which decides what the client sees.
const (
	ClassPolicy      uint64 = 1 // refused by policy; Message says what and why, for the user
	ClassNotValid    uint64 = 2 // not found / not a valid path
	ClassInternal    uint64 = 3 // internal error; Message is short and generic
	ClassUnsupported uint64 = 4 // not implemented
)

// Error is the typed error answer. It also implements error.
type Error struct {
	_msgpack struct{} `msgpack:",as_array"`
	Class    uint64
	Message  string
}

func (Error) Kind() Kind { return KindError }
func (m Error) Validate() error {
	if m.Class < ClassPolicy || m.Class > ClassUnsupported {
		return fmt.Errorf("class %d out of range", m.Class)
	}
	return field("Message", MaxLen(m.Message, MaxText))
}
func (m *Error) Error() string { return m.Message }

// Errorf returns an Error of the given class, its message cut to MaxText.
func Errorf(class uint64, format string, args ...any) *Error {
	s := fmt.Sprintf(format, args...)
	if len(s) > MaxText {
		s = s[:MaxText]
	}
	return &Error{Class: class, Message: s}
}

// OK is the empty answer.
type OK struct {
	_msgpack struct{} `msgpack:",as_array"`
}

func (OK) Kind() Kind      { return KindOK }
func (OK) Validate() error { return nil }

// Hello is a child's first message. It carries no identity: the monitor
// knows who is at the other end of the channel it created.
type Hello struct {
	_msgpack struct{} `msgpack:",as_array"`
}

func (Hello) Kind() Kind      { return KindHello }
func (Hello) Validate() error { return nil }

// HelloOK gives a child its session, as the monitor recorded it.
type HelloOK struct {
	_msgpack     struct{} `msgpack:",as_array"`
	Uid          uint64   // the client's uid (frontends); 0 otherwise
	Trusted      bool     // the client is a trusted user
	User         string   // the client's user name, for messages
	Refusal      string   // if not empty: the connection is refused, say this and close
	StoreDir     string
	NixVersion   string // the version the frontend reports to the client
	MaxVerbosity uint64 // 0..7: the most verbose log level the child may send
	SharedUID    bool   // the monitor is not root: the child runs as the monitor's own uid
}

func (HelloOK) Kind() Kind { return KindHelloOK }
func (m HelloOK) Validate() error {
	if m.Uid >= 1<<32-1 {
		return fmt.Errorf("uid %d out of range", m.Uid)
	}
	if m.MaxVerbosity > MaxLevel {
		return fmt.Errorf("max verbosity %d out of range", m.MaxVerbosity)
	}
	return firstErr(
		field("User", Printable(m.User, MaxShort)),
		field("Refusal", MaxLen(m.Refusal, MaxText)),
		field("StoreDir", ValidStoreDir(m.StoreDir)),
		field("NixVersion", Printable(m.NixVersion, MaxShort)),
	)
}

var commonTable = []Spec{
	row[Error](0),
	row[OK](0),
	row[Hello](0),
	row[HelloOK](0),
}

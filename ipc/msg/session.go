//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

// A pre-started frontend waits, after its Hello, until a client connects. The
// monitor then binds it, once, to that client: it answers the Hello with
// Session, carrying the session it recorded and the client's socket as the
// one fd. A frontend is never bound twice, and the monitor reads nothing but
// Hello from it before the bind.
//
//	frontend                                   monitor
//	  │ ── Hello ──────────────────────────────▶ │  at start, in the pool
//	  │                                          │  ... a client connects ...
//	  │ ◀──────────────── Session + client fd ── │  SO_PEERCRED, policy
//	  │ ── requests (frontend.go) ─────────────▶ │
const KindSession Kind = 0x0013

// Session answers a frontend's Hello: the session (see HelloOK) plus the
// client's socket.
type Session struct {
	_msgpack struct{} `msgpack:",as_array"`
	HelloOK  HelloOK
}

func (Session) Kind() Kind        { return KindSession }
func (m Session) Validate() error { return field("HelloOK", m.HelloOK.Validate()) }

var sessionTable = []Spec{
	row[Session](1),
}

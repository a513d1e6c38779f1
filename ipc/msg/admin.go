//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection
package msg

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// The admin channel: `privnix status`, run by root, asks the monitor for its
// state on a root-only Unix socket (SOCK_SEQPACKET, mode 0600) beside the
// daemon socket. No child speaks on it.
//
//	privnix status (uid 0)                            monitor
//	  │ connect <socket dir>/privnix-admin               │  SO_PEERCRED: uid 0 (or privnixd's own uid), else closed
//	  │ ── StatusRequest{} ─────────────────────────────▶ │  the only request; anything else closes the channel
//	  │ ◀──────────── Status{More} … Status{totals} ───── │  from the monitor's own state; then closed
//
// Long lists are split over several frames: every frame but the last has
// More set; the totals (store, start time, version) are on the last.
const (
	KindStatusRequest Kind = 0x0500 // answered with Status frames
	KindStatus        Kind = 0x0501
)

// MaxStatusEntries bounds each list of one Status frame (a frame then stays
// under MaxBody with the longest store paths and user names).
const MaxStatusEntries = 48

// StatusRequest asks for the daemon's state.
type StatusRequest struct {
	_msgpack struct{} `msgpack:",as_array"`
}

func (StatusRequest) Kind() Kind      { return KindStatusRequest }
func (StatusRequest) Validate() error { return nil }

// StatusConn is one client connection: the identity the monitor read with
// SO_PEERCRED, the trust policy gave it, its frontend, and when it was
// accepted (Unix seconds).
type StatusConn struct {
	_msgpack    struct{} `msgpack:",as_array"`
	UID         uint32
	PID         int32
	User        string
	Trusted     bool
	FrontendPID int32
	FrontendUID uint32
	Since       int64
}

func (c StatusConn) Validate() error {
	return firstErr(field("User", Printable(c.User, MaxShort)), nonNegative("Since", c.Since))
}

// StatusBuild is one build running now: its derivation, its build user, the
// client that asked for it and when it started (Unix seconds).
type StatusBuild struct {
	_msgpack  struct{} `msgpack:",as_array"`
	Drv       StorePath
	BuildUser string
	BuildUID  uint32
	ClientUID uint32
	ClientPID int32
	Since     int64
}

func (b StatusBuild) Validate() error {
	return firstErr(field("Drv", b.Drv.Validate()), field("BuildUser", Printable(b.BuildUser, MaxShort)), nonNegative("Since", b.Since))
}

func nonNegative(name string, v int64) error {
	if v < 0 {
		return fmt.Errorf("%s: %d is negative", name, v)
	}
	return nil
}

// StatusConns is a list of at most MaxStatusEntries connections.
type StatusConns []StatusConn

// DecodeMsgpack implements msgpack.CustomDecoder.
func (l *StatusConns) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxStatusEntries, (*[]StatusConn)(l))
}

// StatusBuilds is a list of at most MaxStatusEntries builds.
type StatusBuilds []StatusBuild

// DecodeMsgpack implements msgpack.CustomDecoder.
func (l *StatusBuilds) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxStatusEntries, (*[]StatusBuild)(l))
}

// Status answers StatusRequest. StorePaths and NarBytes count the valid
// paths and their NAR sizes (what `nix path-info -S` adds up).
type Status struct {
	_msgpack    struct{} `msgpack:",as_array"`
	Connections StatusConns
	Builds      StatusBuilds
	More        bool
	Version     string
	Started     int64 // when privnixd started, Unix seconds
	StorePaths  uint64
	NarBytes    uint64
}

func (Status) Kind() Kind { return KindStatus }
func (m Status) Validate() error {
	if len(m.Connections) > MaxStatusEntries || len(m.Builds) > MaxStatusEntries {
		return fmt.Errorf("more than %d entries in a list", MaxStatusEntries)
	}
	if m.More && (m.Version != "" || m.Started != 0 || m.StorePaths != 0 || m.NarBytes != 0) {
		return fmt.Errorf("totals on a frame that is not the last")
	}
	errs := []error{field("Version", Printable(m.Version, MaxShort)), nonNegative("Started", m.Started)}
	for i, c := range m.Connections {
		errs = append(errs, field(fmt.Sprintf("Connections[%d]", i), c.Validate()))
	}
	for i, b := range m.Builds {
		errs = append(errs, field(fmt.Sprintf("Builds[%d]", i), b.Validate()))
	}
	return firstErr(errs...)
}

var adminTable = []Spec{
	row[StatusRequest](0),
	row[Status](0),
}

// Package msg is the whole vocabulary spoken on privnix's internal channels:
// every message type, its kind number, its fd count and its validator, in one
// place, so that an auditor can read everything an unprivileged process may
// send to the monitor.
//
// # Kinds
//
// A Kind is a 16-bit number, unique across all channels. Requests (and
// fire-and-forget notices such as Log) are even; answers are odd, so an answer
// can never be read as a request. Kinds are grouped by channel:
//
//	0x0000–0x00ff  common: Error, OK, Hello, HelloOK          (common.go)
//	               frontend binding: Session                  (session.go)
//	0x0100–0x01ff  log channel: Log                            (log.go)
//	0x0200–0x02ff  frontend ↔ monitor                          (frontend.go)
//	               batched reads, generation page, 0x0208–0x020f (batch.go)
//	               uploads, 0x0210–0x022f                      (store.go)
//	0x0300–0x03ff  storeproc ↔ monitor                         (store.go)
//	0x0400–0x04ff  buildproc ↔ monitor                         (build.go)
//	0x0500–0x05ff  privnix status ↔ monitor (admin socket)    (admin.go)
//	0x0600–0x06ff  fetcher ↔ monitor (substitution)           (fetch.go)
//
// Each channel file starts with a sequence diagram, then its Kind block, then
// one struct per kind, then its registry table.
//
// # Adding a kind (three small steps, all in the channel's file)
//
// First the struct: msgpack as_array, integer fields uint64/int64 only (range
// checked in Validate), lists only as bounded list types (Strings, StorePaths,
// or a named slice whose DecodeMsgpack calls DecodeList with a maximum), store
// paths as StorePath:
//
//	type AddSignatures struct {
//		_msgpack struct{} `msgpack:",as_array"`
//		Path     StorePath
//		Sigs     Strings
//	}
//
// Then its Kind and Validate methods, with value receivers; Validate checks
// every field's length, range and content with the helpers in check.go:
//
//	func (AddSignatures) Kind() Kind { return KindAddSignatures }
//	func (m AddSignatures) Validate() error {
//		return firstErr(field("Path", m.Path.Validate()), field("Sigs", m.Sigs.Validate(MaxSigs, ValidSig)))
//	}
//
// Last, one row in the channel's table, whose argument is the exact number of
// fds that travel with the message:
//
//	row[AddSignatures](0),
//
// A new channel gets its own file (sequence diagram, Kind block, structs,
// table), its table listed in channels (msg.go), and the line
// "//lint:file-ignore U1000 ..." above its package clause, because staticcheck
// cannot see that msgpack reads the _msgpack fields.
//
// TestSamplesCover (here) and TestRoundTripEveryKind (package ipc) then
// require a sample of the new kind, and TestRegistry refuses field types that
// are not allowed (maps, floats, interfaces, unbounded slices, structs that
// are not as_array).
//
// # Decoding rules (see docs/style-anchors.md §7.4)
//
// Decode checks, in this order and before the decoder allocates anything the
// frame's bytes did not pay for: the kind is registered; the body is at most
// MaxBody bytes; checkShape walks the body along the kind's Go type (a struct
// must be an array of exactly its field count — msgpack/v5 would accept an
// empty array as the zero struct —, a string a str, a bool a bool, an integer
// an integer code whose value fits the field's Go width — v5 narrows silently
// and wraps -1 into a uint64 —, a list an array whose count fits in the bytes
// left; maps, floats, extensions and interfaces are refused; nothing may
// trail); then the strict decode (DisallowUnknownFields; lists refuse counts
// above their maximum or above the bytes left); then Validate. Any failure is
// a protocol violation.
//
// Integer fields are uint64 or int64 range-checked in Validate; a narrower
// width (a named uint32 for a uid, say) is safe too, since checkShape refuses
// values that do not fit it.
//
// Store paths are checked syntactically by Validate (absolute, clean store
// directory, 32 nix32 characters, a valid name). Whether they lie in the
// session's store directory is checked by CheckStoreDir, which package ipc
// applies to every message once the channel knows its store directory.
package msg

package frontend

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"testing"

	"privnix/frontend/wire"
)

type fuzzConn struct {
	io.Reader
	io.Writer
}

// handshakeBytes is what a client of version v sends before its first operation.
func handshakeBytes(v wire.Version) []byte {
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	w.U64(wire.Magic1)
	w.U64(uint64(v))
	if v.AtLeast(38) {
		w.Strings(nil)
	}
	w.U64(0)
	w.U64(0)
	_ = w.Flush()
	return b.Bytes()
}

// FuzzServe feeds random operations after a valid handshake (client 1.18–1.38, daemon 1.38):
// Serve must return without panicking, and allocate in proportion to the input, not to
// the lengths and counts the input claims.
func FuzzServe(f *testing.F) {
	f.Add(uint8(16), false, []byte{})
	f.Fuzz(func(t *testing.T, minor uint8, trusted bool, data []byte) {
		v := wire.V(18 + uint32(minor)%21)
		in := append(handshakeBytes(v), data...)
		sess := Session{Trusted: trusted, StoreDir: "/nix/store", ProtocolVersion: wire.V(38)}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_ = Serve(context.Background(), fuzzConn{bytes.NewReader(in), io.Discard}, sess, newMemStore("/nix/store"))
		runtime.ReadMemStats(&after)
		if grown := after.TotalAlloc - before.TotalAlloc; grown > 32<<20+64*uint64(len(data)) {
			t.Fatalf("Serve allocated %d bytes for %d input bytes", grown, len(data))
		}
	})
}

package ipc

import (
	"errors"
	"runtime"
	"testing"

	"privnix/ipc/msg"
)

// FuzzDecodeFrame feeds arbitrary frames and fd counts to the receive path:
// it must never panic, must return either a valid message or ErrViolation,
// and must allocate no more than the frame pays for.
func FuzzDecodeFrame(f *testing.F) {
	for _, m := range samples() {
		spec, _ := msg.Lookup(m.Kind())
		f.Add(frame(m.Kind(), encode(f, m)), spec.Fds)
	}
	f.Add([]byte{0x02, 0x05, 0x92, 0xdd, 0x00, 0x0f, 0x42, 0x40, 0xc2}, 0)
	f.Add([]byte{0x01, 0x00, 0x93, 0xcd, 0x01, 0x00, 0xa0, 0x90}, 0)
	f.Add([]byte{0x00, 0x03, 0x90, 0x00}, 1)
	f.Fuzz(func(t *testing.T, frame []byte, nfds int) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := decodeFrame(frame, nfds, testDir)
		runtime.ReadMemStats(&after)
		if err != nil {
			if !errors.Is(err, ErrViolation) || m != nil {
				t.Fatalf("error %v (message %v) does not wrap ErrViolation", err, m)
			}
		} else if verr := m.Validate(); verr != nil {
			t.Fatalf("decoded an invalid %T: %v", m, verr)
		}
		if n, max := after.TotalAlloc-before.TotalAlloc, 64<<10+32*uint64(len(frame)); n > max {
			t.Fatalf("%d-byte frame allocated %d bytes (limit %d)", len(frame), n, max)
		}
	})
}

package msg

import (
	"reflect"
	"runtime"
	"testing"
)

// FuzzDecode feeds arbitrary bodies to Decode for every kind. Decode must not
// panic, must allocate no more than the body pays for, and whatever it
// accepts must be valid and re-encode to a body that decodes to the same
// message.
func FuzzDecode(f *testing.F) {
	for _, m := range samples {
		b, err := Encode(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(m.Kind()), b)
	}
	f.Add(uint16(KindPaths), []byte{0x92, 0xdd, 0x00, 0x0f, 0x42, 0x40, 0xc2})
	f.Add(uint16(KindLog), []byte{0x93, 0xcd, 0x01, 0x00, 0xa0, 0x90})
	f.Add(uint16(KindIsValidPath), []byte{0x90})
	f.Fuzz(func(t *testing.T, kind uint16, body []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := Decode(Kind(kind), body)
		runtime.ReadMemStats(&after)
		if n, max := after.TotalAlloc-before.TotalAlloc, 64<<10+32*uint64(len(body)); n > max {
			t.Fatalf("%d-byte body allocated %d bytes (limit %d)", len(body), n, max)
		}
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted an invalid %T: %v", m, err)
		}
		again, err := Encode(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := Decode(Kind(kind), again)
		if err != nil {
			t.Fatalf("re-encoded %T does not decode: %v", m, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed %#v into %#v", m, m2)
		}
	})
}

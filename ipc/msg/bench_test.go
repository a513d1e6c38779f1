package msg

import (
	"fmt"
	"testing"
)

// BenchmarkPathInfos measures what a batch of 256 path infos costs each
// side: the sender validates, checks the store dir and encodes; the
// receiver decodes (shape check, decode, validate) and checks the store dir.
func BenchmarkPathInfos(b *testing.B) {
	var m PathInfos
	for i := range 256 {
		p := StorePath(fmt.Sprintf("%s/%032d-c-q-%d", testDir, i, i))
		m.Infos = append(m.Infos, PathInfo{Path: p, NarHash: testHash, References: StorePaths{p}, NarSize: 100, CA: "fixed:r:" + testHash})
	}
	b.Run("send", func(b *testing.B) {
		for b.Loop() {
			if err := firstErr(m.Validate(), CheckStoreDir(&m, testDir)); err != nil {
				b.Fatal(err)
			}
			if _, err := Encode(nil, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	body, err := Encode(nil, &m)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("receive", func(b *testing.B) {
		for b.Loop() {
			got, err := Decode(KindPathInfos, body)
			if err == nil {
				err = CheckStoreDir(got, testDir)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

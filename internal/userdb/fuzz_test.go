package userdb

import (
	"strings"
	"testing"
)

// FuzzParseIDFiles runs the passwd, group and subid parsers on arbitrary text
// and checks that every range they return is well formed.
func FuzzParseIDFiles(f *testing.F) {
	f.Add("root:x:0:0:root:/root:/bin/bash\nalice:100000:65536\nwheel:x:10:a,b\n")
	f.Fuzz(func(t *testing.T, text string) {
		uids, gids, _ := ParsePasswd(strings.NewReader(text), "f")
		g, _ := ParseGroup(strings.NewReader(text), "f")
		s, _ := ParseSubID(strings.NewReader(text), "f")
		u := InUse{UIDs: append(uids, s...), GIDs: append(gids, g...)}
		for _, l := range [][]Use{u.UIDs, u.GIDs} {
			for _, e := range l {
				if e.Lo > e.Hi || e.What == "" {
					t.Fatalf("bad range %+v", e)
				}
				if u.CheckFree(e.Lo, e.Hi) == nil {
					t.Fatalf("range %+v reported free", e)
				}
			}
		}
	})
}

package conf

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary nix.conf text (with an include target of the same
// contents) through the parser and the settings, checking that nothing panics
// and that accepted lines are well formed.
func FuzzParse(f *testing.F) {
	f.Add("max-jobs = auto\nsandbox = relaxed\n")
	f.Add("include other.conf\n!include missing.conf\nextra-substituters = a # b\n")
	f.Add("a=b\n")
	f.Fuzz(func(t *testing.T, text string) {
		read := memFS(map[string]string{"/c/other.conf": text, "/c/nix.conf": text})
		lines, err := ParseBytes("/c/nix.conf", []byte(text), read)
		if err != nil {
			return
		}
		for _, l := range lines {
			if l.Name == "" || strings.ContainsAny(l.Name+l.Value, "#\n\t\r") || strings.Contains(l.Value, "  ") {
				t.Fatalf("malformed line accepted: %+v", l)
			}
		}
		s := Defaults(host)
		_, _ = s.ApplyLines(lines)
		for _, n := range Names() {
			if _, ok := s.Get(n); !ok {
				t.Fatalf("Get(%q) failed", n)
			}
		}
	})
}

package userdb

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"privnix/nix/conf"
)

func TestParsePasswd(t *testing.T) {
	tests := []struct {
		in         string
		uids, gids []Use
		err        string
	}{
		{"root:x:0:0:root:/root:/bin/bash\n# c\n\n+nis\nalice:x:1000:100::/home/a:/bin/sh\n",
			[]Use{{0, 0, "uid of 'root' (p:1)"}, {1000, 1000, "uid of 'alice' (p:5)"}},
			[]Use{{0, 0, "primary gid of 'root' (p:1)"}, {100, 100, "primary gid of 'alice' (p:5)"}}, ""},
		{"a:x:1\n", nil, nil, "p:1: passwd entry has 3 fields"},
		{"a:x:-1:0:::\n", nil, nil, "p:1: passwd entry 'a' has a bad uid or gid"},
		{"a:x:4294967296:0:::\n", nil, nil, "bad uid or gid"},
	}
	for _, tt := range tests {
		uids, gids, err := ParsePasswd(strings.NewReader(tt.in), "p")
		if !errMatches(err, tt.err) || !reflect.DeepEqual(uids, tt.uids) || !reflect.DeepEqual(gids, tt.gids) {
			t.Errorf("ParsePasswd(%q) = %v %v %v", tt.in, uids, gids, err)
		}
	}
}

func TestParseGroupAndSubID(t *testing.T) {
	gids, err := ParseGroup(strings.NewReader("wheel:x:10:a,b\r\nusers:x:100:\n"), "g")
	if want := []Use{{10, 10, "gid of group 'wheel' (g:1)"}, {100, 100, "gid of group 'users' (g:2)"}}; err != nil || !reflect.DeepEqual(gids, want) {
		t.Errorf("ParseGroup = %v %v", gids, err)
	}
	if _, err := ParseGroup(strings.NewReader("x:y:z:\n"), "g"); !errMatches(err, "g:1: group entry 'x' has a bad gid") {
		t.Errorf("bad gid: %v", err)
	}
	tests := []struct {
		in   string
		want []Use
		err  string
	}{
		{"alice:100000:65536\n1000:200000:0\n", []Use{{100000, 165535, "subordinate ids of 'alice' (s:1)"}}, ""},
		{"big:4294967000:100000\n", []Use{{4294967000, 4294967295, "subordinate ids of 'big' (s:1)"}}, ""},
		{"bad:1\n", nil, "s:1: subordinate id entry has 2 fields"},
		{"bad:x:1\n", nil, "bad start or count"},
		{"bad:4294967296:1\n", nil, "bad start or count"},
	}
	for _, tt := range tests {
		got, err := ParseSubID(strings.NewReader(tt.in), "s")
		if !errMatches(err, tt.err) || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseSubID(%q) = %v %v", tt.in, got, err)
		}
	}
}

func TestCheckFree(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"passwd": "root:x:0:0::/:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n",
		"group":  "root:x:0:\nbig:x:5000:\n",
		"subuid": "alice:100000:65536\n",
		// no subgid: a missing file means no ranges
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u, err := ReadInUse(root)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		lo, hi uint32
		err    string
	}{
		{1, 999, ""},
		{1001, 4999, ""},
		{200000, 300000, ""},
		{999, 1000, "id range 999-1000 is not free: 1000-1000 is the uid of 'alice'"},
		{4000, 6000, "5000-5000 is the gid of group 'big'"},
		{165535, 170000, "100000-165535 is the subordinate ids of 'alice'"},
		{0, 0, "uid of 'root'"},
		{5, 4, "is empty"},
	}
	for _, tt := range tests {
		if err := u.CheckFree(tt.lo, tt.hi); !errMatches(err, tt.err) {
			t.Errorf("CheckFree(%d, %d) = %v, want %q", tt.lo, tt.hi, err, tt.err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "group"), []byte("broken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadInUse(root); !errMatches(err, "group entry has 1 fields") {
		t.Errorf("broken group file: %v", err)
	}
}

func TestCheckRangeFreeOnThisHost(t *testing.T) {
	for _, r := range []conf.UIDRange{conf.DefaultFrontendUIDs, conf.DefaultStoreprocUIDs, conf.DefaultBuildUIDs} {
		if err := CheckRangeFree(r.Lo, r.Hi); err != nil {
			t.Errorf("default range %s: %v", r, err)
		}
	}
	alice := idNum(t, "-u", "privnix-alice")
	if err := CheckRangeFree(alice, alice); !errMatches(err, "uid of 'privnix-alice' (/etc/passwd:") {
		t.Errorf("range around alice's uid: %v", err)
	}
}

func errMatches(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}

package msg

import (
	"reflect"
	"strings"
	"testing"
)

func TestValidators(t *testing.T) {
	h := "7h7qgvs4kgzsn8a6rb273saxyqh4jxlz"
	for _, tc := range []struct {
		name string
		f    func(string) error
		in   string
		ok   bool
	}{
		{"name", ValidName, "hello-2.12.1", true},
		{"name", ValidName, "a+b-c._?=D9", true},
		{"name", ValidName, strings.Repeat("a", MaxName), true},
		{"name", ValidName, strings.Repeat("a", MaxName+1), false},
		{"name", ValidName, "", false},
		{"name", ValidName, ".hidden", false},
		{"name", ValidName, "..", false},
		{"name", ValidName, "a/b", false},
		{"name", ValidName, "a b", false},
		{"name", ValidName, "caf\xc3\xa9", false},
		{"hash part", ValidHashPart, h, true},
		{"hash part", ValidHashPart, h[:31], false},
		{"hash part", ValidHashPart, strings.Replace(h, "7", "e", 1), false},
		{"hash part", ValidHashPart, strings.ToUpper(h), false},
		{"store dir", ValidStoreDir, "/nix/store", true},
		{"store dir", ValidStoreDir, "/s", true},
		{"store dir", ValidStoreDir, "/", false},
		{"store dir", ValidStoreDir, "nix/store", false},
		{"store dir", ValidStoreDir, "/nix/store/", false},
		{"store dir", ValidStoreDir, "/nix//store", false},
		{"store dir", ValidStoreDir, "/nix/./store", false},
		{"store dir", ValidStoreDir, "/nix/../store", false},
		{"store dir", ValidStoreDir, "/nix/..", false},
		{"store dir", ValidStoreDir, "/nix/\x00", false},
		{"store dir", ValidStoreDir, "/" + strings.Repeat("a", MaxStoreDir), false},
		{"store path", sp, "/nix/store/" + h + "-hello", true},
		{"store path", sp, "/tmp/s/" + h + "-hello", true},
		{"store path", sp, "/nix/store/" + h, false},
		{"store path", sp, "/nix/store/" + h + "-", false},
		{"store path", sp, "/nix/store/" + h + "-hello/bin", false},
		{"store path", sp, "/nix/store/" + h + "_hello", false},
		{"store path", sp, "nix/store/" + h + "-hello", false},
		{"store path", sp, "/" + h + "-hello", false},
		{"store path", sp, "/nix/store/../" + h + "-hello", false},
		{"store path", sp, "", false},
		{"in dir", inDir, "/nix/store/" + h + "-hello", true},
		{"in dir", inDir, "/nix/store2/" + h + "-hello", false},
		{"in dir", inDir, "/nix/store/sub/" + h + "-hello", false},
		{"hash", anyHash, testHash, true},
		{"hash", anyHash, "sha256:" + strings.Repeat("0f", 32), true},
		{"hash", anyHash, "sha256:" + strings.Repeat("0F", 32), false},
		{"hash", anyHash, "sha256:2b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s", false}, // excess bits
		{"hash", anyHash, "sha256:" + strings.Repeat("0", 51), false},
		{"hash", anyHash, "sha1:" + strings.Repeat("z", 32), true},
		{"hash", anyHash, "md5:" + strings.Repeat("0", 32), true},
		{"hash", anyHash, "md5:8" + strings.Repeat("0", 25), false},
		{"hash", anyHash, "sha512:3" + strings.Repeat("0", 102), true},
		{"hash", anyHash, "md5:7" + strings.Repeat("0", 25), true},
		{"hash", anyHash, "sha512:4" + strings.Repeat("0", 102), false},
		{"hash", anyHash, "sha384:" + strings.Repeat("0", 96), false},
		{"hash", anyHash, strings.Repeat("0", 64), false},
		{"sha256", sha256, "sha1:" + strings.Repeat("0", 40), false},
		{"ca", ValidCA, "text:" + testHash, true},
		{"ca", ValidCA, "fixed:r:" + testHash, true},
		{"ca", ValidCA, "fixed:sha1:" + strings.Repeat("0", 40), true},
		{"ca", ValidCA, "text:sha1:" + strings.Repeat("0", 40), false},
		{"ca", ValidCA, "git:" + testHash, false},
		{"ca", ValidCA, "", false},
		{"sig", ValidSig, "cache.nixos.org-1:dGVzdA==", true},
		{"sig", ValidSig, ":dGVzdA==", false},
		{"sig", ValidSig, "k:", false},
		{"sig", ValidSig, "k:a b", false},
		{"sig", ValidSig, "k\n:AA", false},
		{"sig", ValidSig, "k:" + strings.Repeat("A", MaxSig), false},
		{"printable", func(s string) error { return Printable(s, 5) }, "abcde", true},
		{"printable", func(s string) error { return Printable(s, 5) }, "abcdef", false},
		{"printable", func(s string) error { return Printable(s, 5) }, "a\tb", false},
		{"printable", func(s string) error { return Printable(s, 5) }, "\x7f", false},
	} {
		if err := tc.f(tc.in); (err == nil) != tc.ok {
			t.Errorf("%s(%q) = %v, want ok=%v", tc.name, tc.in, err, tc.ok)
		}
	}
}

func sp(s string) error      { return StorePath(s).Validate() }
func inDir(s string) error   { return ValidStorePath("/nix/store", StorePath(s)) }
func anyHash(s string) error { return ValidHash(s, "") }
func sha256(s string) error  { return ValidHash(s, "sha256") }

func TestCheckStoreDir(t *testing.T) {
	other := StorePath("/other/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-x")
	for _, tc := range []struct {
		m  Message
		ok bool
	}{
		{&PathInfo{Path: testP1, References: StorePaths{testP2}}, true},
		{PathInfo{Path: testP1}, true},
		{&PathInfo{Path: testP1, Deriver: other}, false},
		{&PathInfo{Path: testP1, References: StorePaths{testP2, other}}, false},
		{&Paths{Paths: StorePaths{other}}, false},
		{&Log{Msg: string(other)}, true}, // a string, not a StorePath
	} {
		if err := CheckStoreDir(tc.m, testDir); (err == nil) != tc.ok {
			t.Errorf("CheckStoreDir(%#v) = %v, want ok=%v", tc.m, err, tc.ok)
		}
	}
}

// TestShapeIntegers checks integer range handling for every width, which
// messages will use through named types.
func TestShapeIntegers(t *testing.T) {
	for _, tc := range []struct {
		typ  reflect.Type
		body []byte
		ok   bool
	}{
		{reflect.TypeFor[uint64](), []byte{0x7f}, true},
		{reflect.TypeFor[uint64](), []byte{0xff}, false}, // -1
		{reflect.TypeFor[uint64](), []byte{0xd0, 0x05}, true},
		{reflect.TypeFor[uint64](), []byte{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, false},
		{reflect.TypeFor[uint64](), []byte{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, true},
		{reflect.TypeFor[uint8](), []byte{0xcc, 0xff}, true},
		{reflect.TypeFor[uint8](), []byte{0xcd, 0x01, 0x00}, false},
		{reflect.TypeFor[uint32](), []byte{0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, false},
		{reflect.TypeFor[int64](), []byte{0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0}, false},
		{reflect.TypeFor[int64](), []byte{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, true},
		{reflect.TypeFor[int64](), []byte{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, true},
		{reflect.TypeFor[int8](), []byte{0xd1, 0xff, 0x80}, true},  // -128
		{reflect.TypeFor[int8](), []byte{0xd1, 0xff, 0x7f}, false}, // -129
		{reflect.TypeFor[int8](), []byte{0xcc, 0x80}, false},
		{reflect.TypeFor[int64](), []byte{0xd2, 0, 0}, false}, // truncated
		{reflect.TypeFor[int64](), []byte{0xc0}, false},       // nil
		{reflect.TypeFor[int64](), []byte{0xca, 0, 0, 0, 0}, false},
		{reflect.TypeFor[string](), []byte{0xc0}, false},
		{reflect.TypeFor[string](), []byte{0xc4, 0x00}, false}, // bin for string
		{reflect.TypeFor[[]byte](), []byte{0xc4, 0x01, 'x'}, true},
		{reflect.TypeFor[[]byte](), []byte{0xc6, 0, 0, 0, 2, 'x'}, false},
		{reflect.TypeFor[bool](), []byte{0x00}, false},
		{reflect.TypeFor[map[string]string](), []byte{0x80}, false},
		{reflect.TypeFor[float64](), []byte{0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, false},
		{reflect.TypeFor[any](), []byte{0xc0}, false},
		{reflect.TypeFor[Strings](), []byte{0xc0}, true},
		{reflect.TypeFor[Strings](), []byte{0x92, 0xa0}, false},
	} {
		rest, err := checkShape(tc.body, tc.typ, 0)
		if ok := err == nil && len(rest) == 0; ok != tc.ok {
			t.Errorf("%s % x: rest % x, err %v; want ok=%v", tc.typ, tc.body, rest, err, tc.ok)
		}
	}
}

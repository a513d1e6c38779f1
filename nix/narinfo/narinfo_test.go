package narinfo

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"privnix/nix/nixhash"
	"privnix/nix/storepath"

	"privnix/internal/testvectors"
)

// vectorsDir returns <repo root>/../shared/vectors/nix, the root being the
// nearest directory above the test holding go.mod.
func vectorsDir(t testing.TB) string {
	return testvectors.Dir(t)
}

// jsonInfo is the JSON form of the nar-info/path-info vectors (versions 1–3).
type jsonInfo struct {
	CA           json.RawMessage   `json:"ca"`
	Compression  string            `json:"compression"`
	Deriver      *string           `json:"deriver"`
	DownloadHash string            `json:"downloadHash"`
	DownloadSize uint64            `json:"downloadSize"`
	NarHash      json.RawMessage   `json:"narHash"`
	NarSize      uint64            `json:"narSize"`
	References   []string          `json:"references"`
	Signatures   []json.RawMessage `json:"signatures"`
	StoreDir     string            `json:"storeDir"`
	URL          string            `json:"url"`
}

// hashField decodes a hash written as an SRI/typed string or, in version 3,
// as {"algorithm","format","hash"}.
func hashField(t *testing.T, raw json.RawMessage) nixhash.Hash {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		h, err := nixhash.Parse(s)
		if err != nil {
			t.Fatalf("hash %q: %v", s, err)
		}
		return h
	}
	var o struct{ Algorithm, Format, Hash string }
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("hash %s: %v", raw, err)
	}
	a, err := nixhash.ParseAlgo(o.Algorithm)
	if err != nil {
		t.Fatal(err)
	}
	h, err := nixhash.ParseAs(o.Hash, a)
	if err != nil {
		t.Fatalf("hash %s: %v", raw, err)
	}
	return h
}

// caField decodes "ca" written as a string (version 1) or {"hash","method"}.
func caField(t *testing.T, raw json.RawMessage) *storepath.ContentAddress {
	t.Helper()
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var o struct {
			Hash   json.RawMessage
			Method string
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatalf("ca %s: %v", raw, err)
		}
		prefix := map[string]string{"nar": "fixed:r:", "flat": "fixed:", "text": "text:"}[o.Method]
		s = prefix + hashField(t, o.Hash).String()
	}
	ca, err := storepath.ParseContentAddress(s)
	if err != nil {
		t.Fatalf("ca %q: %v", s, err)
	}
	return &ca
}

// TestVectorsNarInfo turns every nar-info vector with a URL into .narinfo
// text, parses it back, and checks fields and fingerprint.
func TestVectorsNarInfo(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(vectorsDir(t), "libstore-nar-info", "*", "*.json"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var j jsonInfo
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if j.URL == "" {
			continue
		}
		n++
		d := storepath.Dir("/nix/store")
		if j.StoreDir != "" {
			d = storepath.Dir(j.StoreDir)
		}
		parseRef := func(r string) storepath.Path {
			t.Helper()
			var p storepath.Path
			var err error
			if strings.HasPrefix(r, "/") {
				p, err = d.Parse(r)
			} else {
				p, err = storepath.ParseBase(r)
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			return p
		}
		self := parseRef(j.References[0])
		ni := &NarInfo{StorePath: self, URL: j.URL, Compression: j.Compression,
			NarHash: hashField(t, j.NarHash), NarSize: j.NarSize, FileSize: j.DownloadSize}
		if j.DownloadHash != "" {
			ni.FileHash = hashField(t, json.RawMessage(`"`+j.DownloadHash+`"`))
		}
		for _, r := range j.References {
			ni.References = append(ni.References, parseRef(r))
		}
		if j.Deriver != nil {
			ni.Deriver = parseRef(*j.Deriver)
		}
		for _, raw := range j.Signatures {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				var o struct{ KeyName, Sig string }
				if err := json.Unmarshal(raw, &o); err != nil {
					t.Fatalf("%s: signature %s: %v", f, raw, err)
				}
				s = o.KeyName + ":" + o.Sig
			}
			sig, err := ParseSignature(s)
			if err != nil {
				t.Fatalf("%s: signature %q: %v", f, s, err)
			}
			if sig.String() != s {
				t.Errorf("Signature.String() = %q, want %q", sig.String(), s)
			}
			ni.Sigs = append(ni.Sigs, sig)
		}
		ni.CA = caField(t, j.CA)
		text := ni.String(d)
		back, err := Parse(d, []byte(text))
		if err != nil {
			t.Fatalf("%s: Parse of\n%s: %v", f, text, err)
		}
		if !reflect.DeepEqual(back, ni) {
			t.Errorf("%s: round trip\n%+v\n!=\n%+v", f, back, ni)
		}
		if back.String(d) != text {
			t.Errorf("%s: printed text changed on round trip", f)
		}
		wantFP := "1;" + d.String(self) + ";" + ni.NarHash.String() + ";34878;" +
			"/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar,/nix/store/n5wkd9frr45pa74if5gpz9j7mifg27fh-foo"
		if got := back.Fingerprint(d); got != wantFP || j.NarSize != 34878 {
			t.Errorf("%s: Fingerprint = %q, want %q", f, got, wantFP)
		}
	}
	if n < 3 {
		t.Errorf("only %d nar-info vectors had a URL", n)
	}
}

const nixNarInfo = `StorePath: /tmp/nt/store/yyhp6bvb87675a8jmqfxarq1zkkz63gc-y
URL: nar/0njd6kd77si4cykjpvka9wqyywp0dky7fl1z4frifck15dcirri6.nar.xz
Compression: xz
FileHash: sha256:0njd6kd77si4cykjpvka9wqyywp0dky7fl1z4frifck15dcirri6
FileSize: 168
NarHash: sha256:0nxw9ixxlr4jq9xny3gyp0anrhc89rk34qz79yv70m0az6wwniih
NarSize: 160
References: cgwnjaq1nrpa0sgry3l41ldkqbgjs1bs-x
Deriver: cgwnjaq1nrpa0sgry3l41ldkqbgjs1bs-x.drv
System: x86_64-linux
Sig: test1:qEZTKGa2QnnYoxkyJP19b7TdI57kL1vqZzW3juVrF8iLyprI0OmcdH03RMpuCrvc48eWfT1lllNg5OQb5rvLDA==
CA: text:sha256:1y9d4h99sbn1vl30acnhqzs7jbp8n67iqdspflr1zhwsww1gj8sl
`

func TestParseRejects(t *testing.T) {
	d := storepath.Dir("/tmp/nt/store")
	if _, err := Parse(d, []byte(nixNarInfo)); err != nil {
		t.Fatalf("the good narinfo: %v", err)
	}
	tests := []struct{ name, from, to string }{
		{"no final newline", "\n$", ""},
		{"no space after colon", "URL: ", "URL:"},
		{"two spaces", "URL: ", "URL:  "},
		{"CRLF", "Compression: xz\n", "Compression: xz\r\n"},
		{"other store", "/tmp/nt/store/yyhp", "/nix/store/yyhp"},
		{"path with subdir", "-y\nURL", "-y/bin\nURL"},
		{"duplicate key", "Compression: xz\n", "Compression: xz\nCompression: none\n"},
		{"no StorePath", "StorePath: /tmp/nt/store/yyhp6bvb87675a8jmqfxarq1zkkz63gc-y\n", ""},
		{"no URL", "URL: nar/0njd6kd77si4cykjpvka9wqyywp0dky7fl1z4frifck15dcirri6.nar.xz\n", ""},
		{"no NarHash", "NarHash: sha256:0nxw9ixxlr4jq9xny3gyp0anrhc89rk34qz79yv70m0az6wwniih\n", ""},
		{"NarSize 0", "NarSize: 160", "NarSize: 0"},
		{"NarSize sign", "NarSize: 160", "NarSize: +160"},
		{"NarSize leading zero", "NarSize: 160", "NarSize: 0160"},
		{"NarSize overflow", "NarSize: 160", "NarSize: 18446744073709551616"},
		{"bad NarHash", "NarHash: sha256:0", "NarHash: sha256:e"},
		{"bad reference", "References: cgwn", "References: .gwn"},
		{"double space in references", "References: cgwnjaq1nrpa0sgry3l41ldkqbgjs1bs-x", "References: cgwnjaq1nrpa0sgry3l41ldkqbgjs1bs-x  cgwnjaq1nrpa0sgry3l41ldkqbgjs1bs-x"},
		{"bad deriver", "Deriver: cgwn", "Deriver: /cgwn"},
		{"bad sig", "Sig: test1:qEZT", "Sig: test1:qEZ"},
		{"bad CA", "CA: text:sha256:", "CA: text:sha1:"},
		{"control char", "System: x86_64-linux", "System: x86_64\x01linux"},
		{"no colon", "System: x86_64-linux", "System x86_64-linux"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var text string
			if tt.from == "\n$" {
				text = strings.TrimSuffix(nixNarInfo, "\n")
			} else {
				if !strings.Contains(nixNarInfo, tt.from) {
					t.Fatalf("test text lacks %q", tt.from)
				}
				text = strings.Replace(nixNarInfo, tt.from, tt.to, 1)
			}
			if ni, err := Parse(d, []byte(text)); !errors.Is(err, ErrInvalid) && !errors.Is(err, storepath.ErrInvalid) && !errors.Is(err, nixhash.ErrInvalid) {
				t.Fatalf("Parse accepted or gave an untyped error: %+v, %v", ni, err)
			}
		})
	}
	if _, err := Parse(d, make([]byte, MaxSize+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("an oversized narinfo: %v", err)
	}
}

func TestParseDefaults(t *testing.T) {
	d := storepath.Dir("/tmp/nt/store")
	text := "StorePath: /tmp/nt/store/yyhp6bvb87675a8jmqfxarq1zkkz63gc-y\nURL: nar/x.nar\n" +
		"NarHash: sha256-MEbLufkKVHC2T+djMmZOiMFsFbj+DW97wpJk2ntMvFs=\nNarSize: 160\nReferences: \nDeriver: unknown-deriver\nUnknownKey: whatever\n"
	ni, err := Parse(d, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if ni.Compression != "bzip2" || ni.References != nil || !ni.Deriver.IsZero() || ni.CA != nil || ni.NarHash.Nix32() != "0nxw9ixxlr4jq9xny3gyp0anrhc89rk34qz79yv70m0az6wwniih" {
		t.Errorf("defaults: %+v", ni)
	}
}

func TestNixNarInfoRoundTrip(t *testing.T) {
	d := storepath.Dir("/tmp/nt/store")
	ni, err := Parse(d, []byte(nixNarInfo))
	if err != nil {
		t.Fatal(err)
	}
	if got := ni.String(d); got != nixNarInfo {
		t.Errorf("String() =\n%s\nwant\n%s", got, nixNarInfo)
	}
	pk, err := ParsePublicKey("test1:WSkr2iK6ExnHPdgaTgW1vtxvssyF4AGAjRpMTsTyGoM=")
	if err != nil {
		t.Fatal(err)
	}
	// nix store sign made this signature with nix-store --generate-binary-cache-key's key.
	if !VerifyAny(ni.Fingerprint(d), ni.Sigs, []PublicKey{pk}) {
		t.Errorf("Nix's signature does not verify over %q", ni.Fingerprint(d))
	}
	ni.NarSize++
	if VerifyAny(ni.Fingerprint(d), ni.Sigs, []PublicKey{pk}) {
		t.Error("a signature verified over a changed fingerprint")
	}
}

func TestKeys(t *testing.T) {
	sk, pk, err := GenerateKey("cache.example.org-1")
	if err != nil {
		t.Fatal(err)
	}
	sk2, err := ParseSecretKey(sk.String())
	if err != nil || !sk2.Key.Equal(sk.Key) || sk2.Name != sk.Name {
		t.Fatalf("ParseSecretKey(String()) = %v, %v", sk2, err)
	}
	pk2, err := ParsePublicKey(pk.String())
	if err != nil || !pk2.Key.Equal(pk.Key) || sk.Public().String() != pk.String() {
		t.Fatalf("ParsePublicKey(String()) = %v, %v", pk2, err)
	}
	fp := "1;/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo;sha256:0nxw9ixxlr4jq9xny3gyp0anrhc89rk34qz79yv70m0az6wwniih;160;"
	sig := sk.Sign(fp)
	if !pk.Verify(fp, sig) {
		t.Fatal("own signature does not verify")
	}
	other, _, _ := GenerateKey("cache.example.org-1")
	renamed := pk
	renamed.Name = "other"
	tests := []struct {
		name string
		keys []PublicKey
		sig  Signature
		fp   string
		want bool
	}{
		{"good", []PublicKey{pk}, sig, fp, true},
		{"among others", []PublicKey{other.Public(), pk}, sig, fp, true},
		{"wrong key same name", []PublicKey{other.Public()}, sig, fp, false},
		{"right key other name", []PublicKey{renamed}, sig, fp, false},
		{"changed fingerprint", []PublicKey{pk}, sig, fp + "x", false},
		{"short sig", []PublicKey{pk}, Signature{KeyName: sig.KeyName, Sig: sig.Sig[:63]}, fp, false},
		{"no keys", nil, sig, fp, false},
	}
	for _, tt := range tests {
		if got := VerifyAny(tt.fp, []Signature{tt.sig}, tt.keys); got != tt.want {
			t.Errorf("%s: VerifyAny = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	sk, pk, _ := GenerateKey("k")
	mismatched := append(append([]byte{}, sk.Key[:32]...), make([]byte, 32)...)
	bad := SecretKey{Name: "k", Key: ed25519.PrivateKey(mismatched)}.String()
	tests := []struct {
		name string
		fn   func(string) error
		in   string
	}{
		{"secret no name", secretErr, ":" + strings.SplitN(sk.String(), ":", 2)[1]},
		{"secret no colon", secretErr, strings.Replace(sk.String(), ":", "", 1)},
		{"secret is public", secretErr, pk.String()},
		{"secret mismatched halves", secretErr, bad},
		{"secret space in name", secretErr, "a b" + sk.String()[1:]},
		{"public is secret", publicErr, sk.String()},
		{"public bad base64", publicErr, "k:" + strings.Repeat("!", 44)},
		{"public no padding", publicErr, strings.TrimSuffix(pk.String(), "=")},
		{"sig short", sigErr, "k:" + strings.Repeat("A", 84)},
		{"sig no name", sigErr, strings.Repeat("A", 86) + "=="},
		{"sig newline", sigErr, "k:" + strings.Repeat("A", 86) + "==\n"},
	}
	for _, tt := range tests {
		if err := tt.fn(tt.in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tt.name, err)
		}
	}
	if _, _, err := GenerateKey("bad:name"); err == nil {
		t.Error("GenerateKey took a name with ':'")
	}
}

func secretErr(s string) error { _, err := ParseSecretKey(s); return err }
func publicErr(s string) error { _, err := ParsePublicKey(s); return err }
func sigErr(s string) error    { _, err := ParseSignature(s); return err }

func FuzzParse(f *testing.F) {
	f.Add([]byte(nixNarInfo))
	f.Add([]byte("StorePath: /tmp/nt/store/yyhp6bvb87675a8jmqfxarq1zkkz63gc-y\nURL: u\nNarHash: sha256:0nxw9ixxlr4jq9xny3gyp0anrhc89rk34qz79yv70m0az6wwniih\nNarSize: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := storepath.Dir("/tmp/nt/store")
		ni, err := Parse(d, data)
		if err != nil {
			return
		}
		back, err := Parse(d, []byte(ni.String(d)))
		if err != nil {
			t.Fatalf("printed narinfo does not parse: %v\n%s", err, ni.String(d))
		}
		if back.String(d) != ni.String(d) {
			t.Fatalf("print is not stable:\n%s\n%s", ni.String(d), back.String(d))
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	f.Add("test1:qEZTKGa2QnnYoxkyJP19b7TdI57kL1vqZzW3juVrF8iLyprI0OmcdH03RMpuCrvc48eWfT1lllNg5OQb5rvLDA==")
	f.Add("test1:WSkr2iK6ExnHPdgaTgW1vtxvssyF4AGAjRpMTsTyGoM=")
	f.Fuzz(func(t *testing.T, s string) {
		if sig, err := ParseSignature(s); err == nil && sig.String() != s {
			t.Fatalf("ParseSignature(%q).String() = %q", s, sig.String())
		}
		if k, err := ParsePublicKey(s); err == nil && k.String() != s {
			t.Fatalf("ParsePublicKey(%q).String() = %q", s, k.String())
		}
		if k, err := ParseSecretKey(s); err == nil && k.String() != s {
			t.Fatalf("ParseSecretKey(%q).String() = %q", s, k.String())
		}
	})
}

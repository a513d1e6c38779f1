package narinfofile

import (
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
	"privnix/nix/narinfo"
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
			sig, err := narinfo.ParseSignature(s)
			if err != nil {
				t.Fatalf("%s: signature %q: %v", f, s, err)
			}
			if sig.String() != s {
				t.Errorf("narinfo.Signature.String() = %q, want %q", sig.String(), s)
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
			if ni, err := Parse(d, []byte(text)); !errors.Is(err, narinfo.ErrInvalid) && !errors.Is(err, storepath.ErrInvalid) && !errors.Is(err, nixhash.ErrInvalid) {
				t.Fatalf("Parse accepted or gave an untyped error: %+v, %v", ni, err)
			}
		})
	}
	if _, err := Parse(d, make([]byte, MaxSize+1)); !errors.Is(err, narinfo.ErrInvalid) {
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
	pk, err := narinfo.ParsePublicKey("test1:WSkr2iK6ExnHPdgaTgW1vtxvssyF4AGAjRpMTsTyGoM=")
	if err != nil {
		t.Fatal(err)
	}
	// nix store sign made this signature with nix-store --generate-binary-cache-key's key.
	if !narinfo.VerifyAny(ni.Fingerprint(d), ni.Sigs, []narinfo.PublicKey{pk}) {
		t.Errorf("Nix's signature does not verify over %q", ni.Fingerprint(d))
	}
	ni.NarSize++
	if narinfo.VerifyAny(ni.Fingerprint(d), ni.Sigs, []narinfo.PublicKey{pk}) {
		t.Error("a signature verified over a changed fingerprint")
	}
}

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

package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"privnix/internal/testvectors"
)

// vectorDir finds <repo root>/../shared/vectors/nix by walking up to go.mod.
func vectorDir(t testing.TB) string {
	return testvectors.Dir(t)
}

const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// nix32Decode decodes Nix's base-32 (test helper, §5.3).
func nix32Decode(s string) ([]byte, error) {
	out := make([]byte, len(s)*5/8)
	for k := 0; k < len(s); k++ {
		d := strings.IndexByte(nix32Alphabet, s[k])
		if d < 0 {
			return nil, fmt.Errorf("bad nix32 character %q", s[k])
		}
		n := len(s) - 1 - k
		b := n * 5
		i, j := b/8, uint(b%8)
		out[i] |= byte(d << j)
		if i+1 < len(out) {
			out[i+1] |= byte(d >> (8 - j))
		}
	}
	return out, nil
}

const storeDir = "/nix/store/"

func base(p string) any {
	if p == "" {
		return nil
	}
	return strings.TrimPrefix(p, storeDir)
}

func bases(ps []string) []any {
	out := []any{}
	for _, p := range ps {
		out = append(out, base(p))
	}
	return out
}

func caJSON(t *testing.T, s string) any {
	if s == "" {
		return nil
	}
	c, err := ParseContentAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	d, err := nix32Decode(c.Hash)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"method": c.Method, "hash": c.Algo + "-" + base64.StdEncoding.EncodeToString(d)}
}

func pathInfoJSON(t *testing.T, v Version, path string, i UnkeyedValidPathInfo) any {
	h, err := hex.DecodeString(i.NarHash)
	if err != nil {
		t.Fatal(err)
	}
	sigs := []any{}
	for _, s := range i.Sigs {
		k, sig, _ := strings.Cut(s, ":")
		sigs = append(sigs, map[string]any{"keyName": k, "sig": sig})
	}
	m := map[string]any{
		"ca": caJSON(t, i.CA), "deriver": base(i.Deriver),
		"narHash": "sha256-" + base64.StdEncoding.EncodeToString(h),
		"narSize": i.NarSize, "references": bases(i.References),
		"registrationTime": i.RegistrationTime, "signatures": sigs,
		"storeDir": "/nix/store", "ultimate": i.Ultimate, "version": 3,
	}
	if path != "" {
		m["path"] = base(path)
	}
	return m
}

func derivedJSON(d DerivedPath) any {
	if !d.Built {
		return base(d.Path)
	}
	outs := []any{"*"}
	if len(d.Outputs) > 0 {
		outs = []any{}
		for _, o := range d.Outputs {
			outs = append(outs, o)
		}
	}
	return map[string]any{"drvPath": base(d.Path), "outputs": outs}
}

func buildResultJSON(t *testing.T, b BuildResult) map[string]any {
	m := map[string]any{
		"status": BuildStatusNames[b.Status], "success": b.Succeeded(),
		"timesBuilt": b.TimesBuilt, "startTime": b.StartTime, "stopTime": b.StopTime,
	}
	if b.CPUUser != nil {
		m["cpuUser"] = *b.CPUUser
	}
	if b.CPUSystem != nil {
		m["cpuSystem"] = *b.CPUSystem
	}
	if !b.Succeeded() {
		m["errorMsg"] = b.ErrorMsg
		m["isNonDeterministic"] = b.IsNonDeterministic
		return m
	}
	outs := map[string]any{}
	for _, p := range b.BuiltOutputs {
		_, name, _ := strings.Cut(p.Key, "!")
		var real map[string]any
		if err := json.Unmarshal([]byte(p.Value), &real); err != nil {
			t.Fatal(err)
		}
		if real["id"] != p.Key {
			t.Errorf("realisation id %v differs from its key %q", real["id"], p.Key)
		}
		if strings.Trim(p.Key[len("sha256:"):len(p.Key)-len(name)-1], "0") == "" {
			// HEAD's compat writer: all-zero hash, JSON with id and outPath only.
			delete(real, "id")
			real["signatures"] = []any{}
		}
		outs[name] = real
	}
	for name, o := range b.OutputPaths {
		sigs := []any{}
		for _, s := range o.Signatures {
			sigs = append(sigs, s)
		}
		outs[name] = map[string]any{"outPath": base(o.Path), "signatures": sigs}
	}
	m["builtOutputs"] = outs
	return m
}

// vectorCase decodes one element of a vector's tuple, re-encodes it and maps it to the JSON value.
type vectorCase struct {
	file   string
	decode func(t *testing.T, r *Reader, i int) (any, error)
	encode func(w *Writer, val any)
	json   func(t *testing.T, val any) any
}

func str(r *Reader) (any, error) { return r.String(MaxTextLen, "test") }

func stringCase(file string, toJSON func(string) any) vectorCase {
	return vectorCase{
		file:   file,
		decode: func(_ *testing.T, r *Reader, _ int) (any, error) { return str(r) },
		encode: func(w *Writer, v any) { w.String(v.(string)) },
		json:   func(_ *testing.T, v any) any { return toJSON(v.(string)) },
	}
}

func ident(s string) any { return s }

func listCase(file string, set bool) vectorCase {
	read := func(r *Reader) ([]string, error) {
		if set {
			return r.StringSet(MaxCount, MaxPathLen, "test")
		}
		return r.Strings(MaxCount, MaxPathLen, "test")
	}
	write := func(w *Writer, ss []string) {
		if set {
			w.StringSet(ss)
		} else {
			w.Strings(ss)
		}
	}
	return vectorCase{
		file: file,
		decode: func(_ *testing.T, r *Reader, i int) (any, error) {
			if i < 3 {
				return read(r)
			}
			n, err := r.count(MaxCount, "test")
			var out [][]string
			for range n {
				ss, err := read(r)
				if err != nil {
					return nil, err
				}
				out = append(out, ss)
			}
			return out, err
		},
		encode: func(w *Writer, v any) {
			if ss, ok := v.([]string); ok {
				write(w, ss)
				return
			}
			ls := v.([][]string)
			w.U64(uint64(len(ls)))
			for _, ss := range ls {
				write(w, ss)
			}
		},
		json: func(_ *testing.T, v any) any { return v },
	}
}

func derivedCase(file string, v Version) vectorCase {
	return vectorCase{
		file: file,
		decode: func(_ *testing.T, r *Reader, _ int) (any, error) {
			s, err := r.String(MaxPathLen, "test")
			if err != nil {
				return nil, err
			}
			return ParseDerivedPath(s, v)
		},
		encode: func(w *Writer, d any) { w.String(d.(DerivedPath).Format(v)) },
		json:   func(_ *testing.T, d any) any { return derivedJSON(d.(DerivedPath)) },
	}
}

func buildResultCase(file string, v Version, pathNotHash bool) vectorCase {
	return vectorCase{
		file: file,
		decode: func(_ *testing.T, r *Reader, _ int) (any, error) {
			return ReadBuildResult(r, v, pathNotHash)
		},
		encode: func(w *Writer, b any) { WriteBuildResult(w, v, pathNotHash, b.(BuildResult)) },
		json:   func(t *testing.T, b any) any { return buildResultJSON(t, b.(BuildResult)) },
	}
}

func pathInfoCase(file string, v Version, keyed bool) vectorCase {
	return vectorCase{
		file: file,
		decode: func(_ *testing.T, r *Reader, _ int) (any, error) {
			if keyed {
				return ReadValidPathInfo(r, v)
			}
			return ReadUnkeyedValidPathInfo(r, v)
		},
		encode: func(w *Writer, i any) {
			if keyed {
				WriteValidPathInfo(w, v, i.(ValidPathInfo))
			} else {
				WriteUnkeyedValidPathInfo(w, v, i.(UnkeyedValidPathInfo))
			}
		},
		json: func(t *testing.T, i any) any {
			if keyed {
				k := i.(ValidPathInfo)
				return pathInfoJSON(t, v, k.Path, k.UnkeyedValidPathInfo)
			}
			return pathInfoJSON(t, v, "", i.(UnkeyedValidPathInfo))
		},
	}
}

func realisationJSON(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return fmt.Sprintf("invalid JSON %q: %v", s, err)
	}
	return v
}

func vectorCases(t *testing.T) []vectorCase {
	caseFor := func(dir string) []vectorCase {
		return []vectorCase{
			stringCase(dir+"/string", ident),
			stringCase(dir+"/store-path", base),
			stringCase(dir+"/optional-store-path", base),
			stringCase(dir+"/content-address", func(s string) any { return caJSON(t, s) }),
			stringCase(dir+"/optional-content-address", func(s string) any { return caJSON(t, s) }),
			stringCase(dir+"/drv-output", ident),
			stringCase(dir+"/realisation", realisationJSON),
			stringCase(dir+"/realisation-with-deps", realisationJSON),
			listCase(dir+"/vector", false),
			listCase(dir+"/set", true),
		}
	}
	wp := "libstore-worker-protocol"
	cs := append(caseFor(wp), caseFor("libstore-common-protocol")...)
	return append(cs,
		vectorCase{
			file:   wp + "/build-mode",
			decode: func(_ *testing.T, r *Reader, _ int) (any, error) { return ReadBuildMode(r) },
			encode: func(w *Writer, v any) { w.U64(v.(uint64)) },
			json:   func(_ *testing.T, v any) any { return v },
		},
		vectorCase{
			file:   wp + "/optional-trusted-flag",
			decode: func(_ *testing.T, r *Reader, _ int) (any, error) { return r.Uint(NotTrusted, "test") },
			encode: func(w *Writer, v any) { w.U64(v.(uint64)) },
			json: func(_ *testing.T, v any) any {
				return map[uint64]any{TrustUnknown: nil, Trusted: true, NotTrusted: false}[v.(uint64)]
			},
		},
		derivedCase(wp+"/derived-path-1.29", V(29)),
		derivedCase(wp+"/derived-path-1.30", V(30)),
		buildResultCase(wp+"/build-result-1.27", V(27), false),
		buildResultCase(wp+"/build-result-1.28", V(28), false),
		buildResultCase(wp+"/build-result-1.29", V(29), false),
		buildResultCase(wp+"/build-result-1.29-compat", V(29), false),
		buildResultCase(wp+"/build-result-1.37", V(37), false),
		buildResultCase(wp+"/build-result-realisation-with-path-not-hash", V(38), true),
		vectorCase{
			file: wp + "/keyed-build-result-1.29",
			decode: func(_ *testing.T, r *Reader, _ int) (any, error) {
				return ReadKeyedBuildResult(r, V(29), false)
			},
			encode: func(w *Writer, k any) { WriteKeyedBuildResult(w, V(29), false, k.(KeyedBuildResult)) },
			json: func(t *testing.T, k any) any {
				kb := k.(KeyedBuildResult)
				m := buildResultJSON(t, kb.BuildResult)
				m["path"] = derivedJSON(kb.Path)
				return m
			},
		},
		pathInfoCase(wp+"/unkeyed-valid-path-info-1.15", V(15), false),
		pathInfoCase(wp+"/valid-path-info-1.15", V(15), true),
		pathInfoCase(wp+"/valid-path-info-1.16", V(16), true),
	)
}

// normalise round-trips a value through JSON so numbers and maps compare equal.
func normalise(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVectors(t *testing.T) {
	dir := vectorDir(t)
	for _, c := range vectorCases(t) {
		t.Run(c.file, func(t *testing.T) {
			bin, err := os.ReadFile(filepath.Join(dir, c.file+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			js, err := os.ReadFile(filepath.Join(dir, c.file+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var want []any
			if err := json.Unmarshal(js, &want); err != nil {
				t.Fatal(err)
			}
			br := bytes.NewReader(bin)
			r := NewReader(br)
			var vals []any
			for br.Len() > 0 || r.Buffered() > 0 {
				v, err := c.decode(t, r, len(vals))
				if err != nil {
					t.Fatalf("element %d: %v", len(vals), err)
				}
				vals = append(vals, v)
			}
			if len(vals) != len(want) {
				t.Fatalf("decoded %d values, JSON has %d", len(vals), len(want))
			}
			var out bytes.Buffer
			w := NewWriter(&out)
			for i, v := range vals {
				if got := normalise(t, c.json(t, v)); !reflect.DeepEqual(got, want[i]) {
					t.Errorf("element %d:\n got %v\nwant %v", i, got, want[i])
				}
				c.encode(w, v)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), bin) {
				t.Errorf("re-encoding differs:\n got %x\nwant %x", out.Bytes(), bin)
			}
		})
	}
}

// TestRealisationJSON re-marshals every 2.8-style realisation JSON in the vectors byte for byte.
func TestRealisationJSON(t *testing.T) {
	dir := vectorDir(t)
	var jsons []string
	for _, f := range []string{"libstore-worker-protocol/realisation-with-deps.bin", "libstore-common-protocol/realisation-with-deps.bin"} {
		bin, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewReader(bytes.NewReader(bin)).String(MaxTextLen, "realisation")
		if err != nil {
			t.Fatal(err)
		}
		jsons = append(jsons, s)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "libstore-worker-protocol/build-result-1.29.bin"))
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(bin))
	for range 3 {
		b, err := ReadBuildResult(r, V(29), false)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range b.BuiltOutputs {
			jsons = append(jsons, p.Value)
		}
	}
	if len(jsons) < 4 {
		t.Fatalf("only %d realisations found", len(jsons))
	}
	for _, s := range jsons {
		real, err := ParseRealisation(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := real.JSON(); got != s {
			t.Errorf("re-marshalled\n %s\nwant\n %s", got, s)
		}
	}
}

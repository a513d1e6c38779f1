package drv_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"privnix/nix/drv"
	"privnix/nix/drv/aterm"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"

	"privnix/internal/testvectors"
)

const nixStore = storepath.Dir("/nix/store")

// vectorsDir finds <repo root>/../shared/vectors/nix, the root being the
// first directory upwards holding go.mod.
func vectorsDir(t testing.TB) string {
	return testvectors.Dir(t)
}

func readVector(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir(t), "libstore-derivation", rel))
	if err != nil {
		t.Fatalf("reading test vector: %v", err)
	}
	return b
}

func parseVector(t testing.TB, rel string) *drv.Derivation {
	t.Helper()
	d, err := aterm.Parse(readVector(t, rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return d
}

func noLookup(p storepath.Path) (nixhash.Hash, error) {
	return nixhash.Hash{}, errors.New("unexpected lookup of " + p.Base())
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestHashModuloVectors recomputes the hash-modulo chain of Nix's tests
// bottom-up: the .drv paths of each layer are the input paths of the next,
// the hex keys in the *-modulo files are the inputs' hashes, and each masked
// hash is the SHA-256 of its *-modulo file.
func TestHashModuloVectors(t *testing.T) {
	known := map[storepath.Path]nixhash.Hash{}
	lookup := func(p storepath.Path) (nixhash.Hash, error) {
		h, ok := known[p]
		if !ok {
			return h, errors.New("no hash for " + p.Base())
		}
		return h, nil
	}
	layers := []struct {
		file, name, path, modulo, unmaskedHex string
	}{
		{"source-first", "source", "q4mzjdlh5px6977h7v5fdsk1p33yg583-source.drv", "", "42cfa58bf5a281911b6c9471c67cf64f70a820b033415190db3da91710c5ff2c"},
		{"source-second", "source", "jwmbpldsdgfjhkxk317jn55jilyfl63f-source.drv", "", "42cfa58bf5a281911b6c9471c67cf64f70a820b033415190db3da91710c5ff2c"},
		{"intermediate-first", "intermediate", "", "intermediate-first-modulo", "6df335a6cafec6b08aa38163a4a3d1b8f04bc8dc10de4ad35d677f911f2d3b5a"},
		{"intermediate-second", "intermediate", "", "intermediate-second-modulo", "6df335a6cafec6b08aa38163a4a3d1b8f04bc8dc10de4ad35d677f911f2d3b5a"},
		{"parent-joined", "parent", "", "parent-joined-modulo", ""},
		{"parent-split", "parent", "", "parent-split-modulo", ""},
	}
	for _, l := range layers {
		d := parseVector(t, "hash-modulo/"+l.file+".drv")
		p, err := drv.Path(nixStore, l.name, d)
		if err != nil {
			t.Fatalf("%s: drv path: %v", l.file, err)
		}
		if l.path != "" && p.Base() != l.path {
			t.Errorf("%s: drv path %s, want %s", l.file, p.Base(), l.path)
		}
		if l.modulo != "" {
			masked, err := drv.HashModulo(nixStore, d, true, lookup)
			if err != nil {
				t.Fatalf("%s: masked hash modulo: %v", l.file, err)
			}
			if want := sha256Hex(readVector(t, "hash-modulo/"+l.modulo+".drv")); masked.Base16() != want {
				t.Errorf("%s: masked hash modulo %s, want sha256 of %s = %s", l.file, masked.Base16(), l.modulo, want)
			}
		}
		h, err := drv.HashModulo(nixStore, d, false, lookup)
		if err != nil {
			t.Fatalf("%s: hash modulo: %v", l.file, err)
		}
		if l.unmaskedHex != "" && h.Base16() != l.unmaskedHex {
			t.Errorf("%s: hash modulo %s, want %s", l.file, h.Base16(), l.unmaskedHex)
		}
		known[p] = h
	}
	// The parents' inputs are exactly the intermediates' computed paths.
	for _, f := range []string{"parent-joined", "parent-split"} {
		for _, in := range parseVector(t, "hash-modulo/"+f+".drv").InputDrvs {
			p, err := nixStore.Parse(in.Path)
			if _, ok := known[p]; err != nil || !ok {
				t.Errorf("%s: input %s is not the computed path of an intermediate vector", f, in.Path)
			}
		}
	}
}

// TestCheckVectors checks declared outputs where the vectors allow it (see
// the vectors README): the input-addressed advanced-attributes drvs without
// inputs reproduce; floating CA ones have no paths before building; the
// bad-ca-fixed-path vector claims a path its hash does not give.
func TestCheckVectors(t *testing.T) {
	cases := []struct {
		file, name, wantErr string
	}{
		{"ia/advanced-attributes-defaults.drv", "advanced-attributes-defaults", ""},
		{"ia/advanced-attributes-structured-attrs-defaults.drv", "advanced-attributes-structured-attrs-defaults", ""},
		{"hash-modulo/source-first.drv", "source", ""},
		{"hash-modulo/source-second.drv", "source", ""},
		{"ca/advanced-attributes-defaults.drv", "advanced-attributes-defaults", "floating content-addressed derivation are only known after it is built"},
		{"ca/advanced-attributes.drv", "advanced-attributes", "floating content-addressed derivation are only known after it is built"},
		{"bad-ca-fixed-path.drv", "fixed", `has incorrect output "out"`},
		{"simple-derivation.drv", "simple-derivation", "derivation has no outputs"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			err := drv.Check(nixStore, c.name, parseVector(t, c.file), noLookup)
			if c.wantErr == "" && err != nil {
				t.Fatalf("check: %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("got %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}

// headJSON renders d in the JSON form (version 4) of Nix's current tests, for
// the fields an ATerm holds.
func headJSON(t *testing.T, d *drv.Derivation) map[string]any {
	t.Helper()
	base := func(abs string) string { return strings.TrimPrefix(abs, string(nixStore)+"/") }
	outs := map[string]any{}
	for _, o := range d.Outputs {
		outs[o.Name] = outputJSON(t, o)
	}
	drvs := map[string]any{}
	for _, in := range d.InputDrvs {
		drvs[base(in.Path)] = map[string]any{"dynamicOutputs": map[string]any{}, "outputs": strs(in.Outputs)}
	}
	srcs := []any{}
	for _, s := range d.InputSrcs {
		srcs = append(srcs, base(s))
	}
	env := map[string]any{}
	for _, e := range d.Env {
		env[e.Key] = e.Value
	}
	m := map[string]any{
		"args": strs(d.Args), "builder": d.Builder, "env": env, "system": d.Platform, "outputs": outs,
		"inputs": map[string]any{"drvs": drvs, "srcs": srcs},
	}
	// Structured attributes appear as an object of their own, not as __json.
	if j, ok := env["__json"]; ok {
		var attrs any
		if err := json.Unmarshal([]byte(j.(string)), &attrs); err != nil {
			t.Fatalf("__json: %v", err)
		}
		m["structuredAttrs"] = attrs
		delete(env, "__json")
	}
	return m
}

func strs(s []string) []any {
	out := []any{}
	for _, v := range s {
		out = append(out, v)
	}
	return out
}

func outputJSON(t *testing.T, o drv.Output) map[string]any {
	info, err := o.Info(nixStore)
	if err != nil {
		t.Fatalf("output %q: %v", o.Name, err)
	}
	method := map[storepath.FileIngestion]string{storepath.Flat: "flat", storepath.Recursive: "nar"}[info.Method]
	switch info.Kind {
	case drv.InputAddressed:
		return map[string]any{"path": info.Path.Base()}
	case drv.FixedOutput:
		return map[string]any{"hash": info.Hash.SRI(), "method": method}
	case drv.FloatingCA:
		return map[string]any{"hashAlgo": info.Algo.String(), "method": method}
	case drv.Impure:
		return map[string]any{"hashAlgo": info.Algo.String(), "method": method, "impure": true}
	}
	return map[string]any{}
}

// TestJSONVectors compares parsed derivations with the JSON form of the same
// vectors, field by field (the JSON also holds "name" and "version", which
// the ATerm does not).
func TestJSONVectors(t *testing.T) {
	for _, f := range []string{
		"simple-derivation", "hash-modulo/source-first", "hash-modulo/source-second",
		"hash-modulo/intermediate-first", "hash-modulo/intermediate-second",
		"hash-modulo/parent-joined", "hash-modulo/parent-split",
		"ca/advanced-attributes", "ca/advanced-attributes-defaults",
		"ca/advanced-attributes-structured-attrs", "ca/advanced-attributes-structured-attrs-defaults",
		"ia/advanced-attributes", "ia/advanced-attributes-defaults",
		"ia/advanced-attributes-structured-attrs", "ia/advanced-attributes-structured-attrs-defaults",
	} {
		t.Run(f, func(t *testing.T) {
			var want map[string]any
			if err := json.Unmarshal(readVector(t, f+".json"), &want); err != nil {
				t.Fatal(err)
			}
			d := parseVector(t, f+".drv")
			if name, ok := d.Getenv("name"); ok && want["name"] != name {
				t.Errorf("name %v, env has %q", want["name"], name)
			}
			delete(want, "name")
			delete(want, "version")
			if got := headJSON(t, d); !reflect.DeepEqual(got, want) {
				g, _ := json.MarshalIndent(got, "", " ")
				w, _ := json.MarshalIndent(want, "", " ")
				t.Errorf("parsed derivation differs from its JSON:\n got %s\nwant %s", g, w)
			}
		})
	}
}

// TestOutputJSONVectors types single ATerm output triples and compares them
// with the output-*.json vectors.
func TestOutputJSONVectors(t *testing.T) {
	const hexHash = "894517c9163c896ec31a2adbd33c0681fd5f45b2c0ef08a64c92a03fb97f390f"
	cases := []struct {
		file    string
		out     drv.Output
		wantErr string
	}{
		{"output-inputAddressed", drv.Output{Name: "output-name", Path: "/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-drv-name-output-name"}, ""},
		{"output-caFixedFlat", drv.Output{Name: "out", Path: "/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-x", HashAlgo: "sha256", Hash: hexHash}, ""},
		{"output-caFixedNAR", drv.Output{Name: "out", Path: "/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-x", HashAlgo: "r:sha256", Hash: hexHash}, ""},
		{"output-caFixedText", drv.Output{Name: "out", Path: "/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-x", HashAlgo: "text:sha256", Hash: hexHash}, "only flat and r: (NAR) methods are supported"},
		{"output-caFloating", drv.Output{Name: "out", HashAlgo: "r:sha256"}, ""},
		{"output-deferred", drv.Output{Name: "out"}, ""},
		{"output-impure", drv.Output{Name: "out", HashAlgo: "r:sha256", Hash: "impure"}, ""},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			var want map[string]any
			if err := json.Unmarshal(readVector(t, c.file+".json"), &want); err != nil {
				t.Fatal(err)
			}
			if c.wantErr != "" {
				if _, err := c.out.Info(nixStore); err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, c.wantErr)
				}
				return
			}
			if got := outputJSON(t, c.out); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

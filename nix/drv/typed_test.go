package drv_test

import (
	"strings"
	"testing"

	"privnix/nix/drv"
)

// TestCheckRefusesTampering edits a reproducible vector the ways a user could
// try to claim someone else's output path.
func TestCheckRefusesTampering(t *testing.T) {
	const other = "/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-glibc"
	cases := []struct {
		name, wantErr string
		edit          func(d *drv.Derivation)
	}{
		{"untouched", "", func(d *drv.Derivation) {}},
		{"output path", `has incorrect output "out"`, func(d *drv.Derivation) { d.Outputs[0].Path = other }},
		{"output and env", `has incorrect output "out"`, func(d *drv.Derivation) {
			d.Outputs[0].Path = other
			setenv(d, "out", other)
		}},
		{"env only", `has incorrect environment variable "out"`, func(d *drv.Derivation) { setenv(d, "out", other) }},
		{"env removed", `has incorrect output "out"`, func(d *drv.Derivation) { setenv(d, "out", "") }},
		{"builder changed", `has incorrect output "out"`, func(d *drv.Derivation) { d.Builder = "/bin/evil" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := parseVector(t, "ia/advanced-attributes-defaults.drv")
			c.edit(d)
			err := drv.Check(nixStore, "advanced-attributes-defaults", d, noLookup)
			if c.wantErr == "" && err != nil {
				t.Fatalf("check: %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("got %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}

// setenv sets key to v, or removes it if v is "" (which changes the masked
// hash too, so the output path no longer matches).
func setenv(d *drv.Derivation, key, v string) {
	for i, e := range d.Env {
		if e.Key == key {
			if v == "" {
				d.Env = append(d.Env[:i], d.Env[i+1:]...)
			} else {
				d.Env[i].Value = v
			}
			return
		}
	}
}

// TestValidate covers the ways a canonical ATerm can still be an invalid derivation.
func TestValidate(t *testing.T) {
	const (
		p    = "/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-x"
		hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	)
	ok := func() *drv.Derivation {
		return &drv.Derivation{
			Outputs:   []drv.Output{{Name: "out", Path: p}},
			InputDrvs: []drv.InputDrv{{Path: p + ".drv", Outputs: []string{"out"}}},
			InputSrcs: []string{p},
		}
	}
	cases := []struct {
		name, wantErr string
		edit          func(d *drv.Derivation)
	}{
		{"valid", "", func(d *drv.Derivation) {}},
		{"no outputs", "derivation has no outputs", func(d *drv.Derivation) { d.Outputs = nil }},
		{"output outside store", `is not in the store directory`, func(d *drv.Derivation) { d.Outputs[0].Path = "/tmp/x" }},
		{"bad output name", `output name "a b"`, func(d *drv.Derivation) { d.Outputs[0].Name = "a b" }},
		{"empty output name", `output name ""`, func(d *drv.Derivation) { d.Outputs[0].Name = "" }},
		{"mixed kinds", `all outputs must be of one kind`, func(d *drv.Derivation) {
			d.Outputs = []drv.Output{{Name: "dev", HashAlgo: "r:sha256"}, {Name: "out", Path: p}}
		}},
		{"fixed with two outputs", `exactly one output, called "out"`, func(d *drv.Derivation) {
			d.Outputs = []drv.Output{{Name: "dev", Path: p, HashAlgo: "sha256", Hash: hash}, {Name: "out", Path: p, HashAlgo: "sha256", Hash: hash}}
		}},
		{"fixed not named out", `exactly one output, called "out"`, func(d *drv.Derivation) {
			d.Outputs = []drv.Output{{Name: "bin", Path: p, HashAlgo: "sha256", Hash: hash}}
		}},
		{"fixed uppercase hash", `not a lowercase base16 sha256 digest`, func(d *drv.Derivation) {
			d.Outputs[0] = drv.Output{Name: "out", Path: p, HashAlgo: "sha256", Hash: strings.ToUpper(hash)}
		}},
		{"fixed nix32 hash", `not a lowercase base16 sha256 digest`, func(d *drv.Derivation) {
			d.Outputs[0] = drv.Output{Name: "out", Path: p, HashAlgo: "sha256", Hash: "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"}
		}},
		{"fixed short hash", `not a lowercase base16 sha256 digest`, func(d *drv.Derivation) {
			d.Outputs[0] = drv.Output{Name: "out", Path: p, HashAlgo: "sha256", Hash: hash[2:]}
		}},
		{"unknown algo", `sha3`, func(d *drv.Derivation) { d.Outputs[0] = drv.Output{Name: "out", Path: p, HashAlgo: "sha3", Hash: hash} }},
		{"git method", `only flat and r: (NAR) methods`, func(d *drv.Derivation) { d.Outputs[0] = drv.Output{Name: "out", HashAlgo: "git:sha1"} }},
		{"hash without algo", `has hash`, func(d *drv.Derivation) { d.Outputs[0].Hash = hash }},
		{"floating with path", `cannot have before it is built`, func(d *drv.Derivation) { d.Outputs[0].HashAlgo = "r:sha256" }},
		{"input not a drv", `does not end in .drv`, func(d *drv.Derivation) { d.InputDrvs[0].Path = p }},
		{"input outside store", `is not in the store directory`, func(d *drv.Derivation) { d.InputDrvs[0].Path = "/nix/store2/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-x.drv" }},
		{"bad input output name", `output name "a/b"`, func(d *drv.Derivation) { d.InputDrvs[0].Outputs = []string{"a/b"} }},
		{"source with subpath", `input source`, func(d *drv.Derivation) { d.InputSrcs[0] = p + "/bin" }},
		{"not canonical", `not canonical`, func(d *drv.Derivation) { d.InputSrcs = []string{p, p} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := ok()
			c.edit(d)
			err := d.Validate(nixStore)
			if c.wantErr == "" && err != nil {
				t.Fatalf("validate: %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("got %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}

// TestPrintEscapes checks the printer's quoting and its refusal of
// non-canonical values.
func TestPrintEscapes(t *testing.T) {
	d := &drv.Derivation{Platform: "a\"b\\c\nd\re\tf\x01é", Args: []string{""}}
	got, err := d.ATerm()
	if want := `Derive([],[],[],"a\"b\\c\nd\re\tf` + "\x01é" + `","",[""],[])`; err != nil || string(got) != want {
		t.Fatalf("got %q (%v), want %q", got, err, want)
	}
	for _, bad := range []*drv.Derivation{
		{Env: []drv.EnvVar{{Key: "b"}, {Key: "a"}}},
		{Outputs: []drv.Output{{Name: "out"}, {Name: "out"}}},
		{InputDrvs: []drv.InputDrv{{Path: "/a"}}},
		{Args: []string{"\x00"}},
	} {
		if out, err := bad.ATerm(); err == nil {
			t.Errorf("printed non-canonical %+v as %q", bad, out)
		}
	}
}

package storeproc

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"privnix/ipc/msg"
	"privnix/nix/drv"
	"privnix/nix/drv/aterm"
)

// A derivation larger than a frame goes out in several Drv parts, each
// valid and within msg.MaxBody, and assembling them (as the monitor does)
// prints back the original bytes.
func TestDrvPartsRoundTrip(t *testing.T) {
	d := &drv.Derivation{
		Outputs:   []drv.Output{{Name: "out", Path: "/nix/store/00000000000000000000000000000000-big"}},
		InputDrvs: []drv.InputDrv{},
		Platform:  "x86_64-linux",
		Builder:   "/bin/sh",
		Args:      []string{"-c", "echo"},
	}
	for i := 0; i < 3000; i++ {
		d.InputSrcs = append(d.InputSrcs, "/nix/store/"+strings.Repeat(string(rune('a'+i%20)), 32)+"-src"+strings.Repeat("x", i%7)+"-"+strconv.Itoa(i))
	}
	slices.Sort(d.InputSrcs)
	d.InputSrcs = slices.Compact(d.InputSrcs)
	d.Env = []drv.EnvVar{{Key: "big", Value: strings.Repeat("v\n\"\\", 100<<10)}, {Key: "out", Value: d.Outputs[0].Path}, {Key: "small", Value: "s"}}
	want, err := d.ATerm()
	if err != nil {
		t.Fatal(err)
	}
	parts := DrvParts(d)
	if len(parts) < 3 {
		t.Fatalf("%d parts", len(parts))
	}
	got := &drv.Derivation{InputDrvs: []drv.InputDrv{}}
	for i, p := range parts {
		m := p.(*msg.Drv)
		if err := m.Validate(); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		body, err := msg.Encode(nil, m)
		if err != nil || len(body) > msg.MaxBody {
			t.Fatalf("part %d: %d bytes, %v", i, len(body), err)
		}
		dec, err := msg.Decode(msg.KindDrv, body)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		m = dec.(*msg.Drv)
		if m.More != (i < len(parts)-1) {
			t.Fatalf("part %d: More %v", i, m.More)
		}
		if i == 0 {
			got.Platform, got.Builder = m.Platform, m.Builder
		}
		for _, o := range m.Outputs {
			got.Outputs = append(got.Outputs, drv.Output{Name: o.Name, Path: o.Path, HashAlgo: o.HashAlgo, Hash: o.Hash})
		}
		got.InputSrcs = append(got.InputSrcs, m.InputSrcs...)
		got.Args = append(got.Args, m.Args...)
		for _, kv := range m.Env {
			if n := len(got.Env); n > 0 && got.Env[n-1].Key == kv.Key {
				got.Env[n-1].Value += kv.Value
			} else {
				got.Env = append(got.Env, drv.EnvVar{Key: kv.Key, Value: kv.Value})
			}
		}
	}
	printed, err := got.ATerm()
	if err != nil || !bytes.Equal(printed, want) {
		t.Fatalf("reassembled derivation differs (%v)", err)
	}
	if _, err := aterm.Parse(want); err != nil {
		t.Fatal(err)
	}
}

// What is not a canonical derivation is an Error for the user; more bytes
// than MaxSize too.
func TestParseDrvJobRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		text string
		max  uint64
	}{
		"garbage":    {"not a derivation", 1 << 20},
		"trailing":   {`Derive([("out","/nix/store/00000000000000000000000000000000-x","","")],[],[],"s","b",[],[])x`, 1 << 20},
		"too large":  {`Derive([],[],[],"s","b",[],[])`, 8},
		"unsorted":   {`Derive([("out","","",""),("dev","","","")],[],[],"s","b",[],[])`, 1 << 20},
		"bad escape": {`Derive([],[],[],"s\q","b",[],[])`, 1 << 20},
	} {
		t.Run(name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			go func() { pw.WriteString(tc.text); pw.Close() }()
			out := ParseDrvJob(&DrvJob{ParseDrv: msg.ParseDrv{MaxSize: tc.max}, Data: pr})
			pr.Close()
			if len(out) != 1 {
				t.Fatalf("%d answers", len(out))
			}
			e, ok := out[0].(*msg.Error)
			if !ok || e.Class != msg.ClassPolicy {
				t.Fatalf("answer %#v", out[0])
			}
			t.Log(e.Message)
		})
	}
}

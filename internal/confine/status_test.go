package confine

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseStatusSample(t *testing.T) {
	f, err := os.Open("testdata/status-root-6.18.txt") // /proc/self/status of `cp` run as root on the dev VM
	must(t, err)
	defer f.Close()
	r, err := ParseStatus(f)
	must(t, err)
	if r.Uid != [4]int{0, 0, 0, 0} || r.Gid != [4]int{0, 0, 0, 0} {
		t.Errorf("ids %v %v", r.Uid, r.Gid)
	}
	if r.CapEff != 0x1fffeffffff || r.CapBnd != 0x1fffeffffff || r.CapAmb != 0 {
		t.Errorf("caps eff %x bnd %x amb %x", r.CapEff, r.CapBnd, r.CapAmb)
	}
	if r.NoNewPrivs || r.Seccomp != 0 || r.SeccompFilters != 0 {
		t.Errorf("nnp %v seccomp %d filters %d", r.NoNewPrivs, r.Seccomp, r.SeccompFilters)
	}
}

func TestParseStatusRejects(t *testing.T) {
	good, err := os.ReadFile("testdata/status-root-6.18.txt")
	must(t, err)
	for name, mangle := range map[string]func(string) string{
		"empty":        func(string) string { return "" },
		"three uids":   func(s string) string { return strings.Replace(s, "Uid:\t0\t0\t0\t0", "Uid:\t0\t0\t0", 1) },
		"bad cap":      func(s string) string { return strings.Replace(s, "CapEff:\t", "CapEff:\tzz", 1) },
		"no seccomp":   func(s string) string { return strings.Replace(s, "Seccomp:", "Xeccomp:", 1) },
		"no capbnd":    func(s string) string { return strings.Replace(s, "CapBnd:", "CapXnd:", 1) },
		"bad groups":   func(s string) string { return strings.Replace(s, "Groups:", "Groups:\tx", 1) },
		"repeated uid": func(s string) string { return strings.Replace(s, "Gid:", "Uid:\t1\t1\t1\t1\nGid:", 1) },
		"negative nnp": func(s string) string { return strings.Replace(s, "NoNewPrivs:\t0", "NoNewPrivs:\tx", 1) },
	} {
		if _, err := ParseStatus(strings.NewReader(mangle(string(good)))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStatusSelf(t *testing.T) {
	r, err := Status()
	must(t, err)
	if r.Uid[1] != os.Geteuid() {
		t.Errorf("euid %d, want %d", r.Uid[1], os.Geteuid())
	}
}

func FuzzParseStatus(f *testing.F) {
	good, err := os.ReadFile("testdata/status-root-6.18.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(good))
	f.Add("Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nGroups:\t\nCapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t0\nCapAmb:\t0\nNoNewPrivs:\t1\nSeccomp:\t2\n")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseStatus(strings.NewReader(s))
		if err != nil {
			return
		}
		// Whatever parses must have had all the identity and capability lines.
		for _, k := range []string{"Uid:", "Gid:", "CapEff:", "CapPrm:", "CapBnd:", "NoNewPrivs:", "Seccomp:"} {
			if !strings.Contains(s, k) {
				t.Fatalf("accepted input without %s: %+v", k, r)
			}
		}
	})
}

// Refusals that happen before anything is applied, so they are safe to run
// in the (root, unconfined) test process itself.
func TestApplyRefusesEarly(t *testing.T) {
	for name, call := range map[string]func() error{
		"fetcher writable":  func() error { return Apply(Fetcher, Options{WritablePaths: []string{"/tmp"}}) },
		"builder":           func() error { return Apply(Builder, Options{}) },
		"unknown":           func() error { return Apply(Profile(99), Options{}) },
		"frontend writable": func() error { return Apply(Frontend, Options{WritablePaths: []string{"/tmp"}}) },
		"frontend writable fd": func() error {
			return Apply(Frontend, Options{WritableDirFDs: []int{0}})
		},
	} {
		if err := call(); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
	// And as root, the first real step refuses.
	if err := Apply(Frontend, Options{}); !errors.Is(err, ErrPrivileged) {
		t.Errorf("as uid %d: %v, want ErrPrivileged", os.Geteuid(), err)
	}
	r, err := Status()
	must(t, err)
	if r.NoNewPrivs || r.Seccomp != 0 {
		t.Fatalf("a refused Apply changed the process: %+v", r)
	}
}

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// TestUnprivilegedDaemonBuilds: privnixd started by alice builds as alice,
// sandboxed in namespaces of its own (a user namespace where the builder is
// uid 1000, gid 100, as Nix's), and gives the output nix-daemon 2.8 run by
// alice gives: same path, same contents.
func TestUnprivilegedDaemonBuilds(t *testing.T) {
	testenv.RequireRoot(t) // to become alice; the daemons run as alice
	testenv.RequireNix(t)
	s := testenv.NewStore(t, "sandbox = true\n")
	in := filepath.Join(s.Root, "in")
	copyBusybox(t, in)
	os.WriteFile(filepath.Join(in, "own.nix"), []byte(`let bb = ./bb; in derivation { name = "own"; system = "x86_64-linux";
  builder = "${bb}/bin/sh";
  args = [ "-c" "B=${bb}/bin/busybox; { $B id -u; $B id -g; $B pwd; $B hostname; $B cat /etc/passwd; } > $out" ]; }`), 0o644)
	var logs func() string
	os.WriteFile(filepath.Join(in, "status.nix"), []byte(`let bb = ./bb; in derivation { name = "status"; system = "x86_64-linux";
  builder = "${bb}/bin/sh";
  args = [ "-c" "${bb}/bin/busybox grep -E '^(CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status > $out" ]; }`), 0o644)
	build := func(who string, expr ...string) (string, string) {
		if expr == nil {
			expr = []string{"own.nix"}
		}
		r := s.Run(t, testenv.Alice, nil, "nix-build", "--no-out-link", filepath.Join(in, expr[0]))
		if r.Err != nil {
			t.Fatalf("%s: %v\n%s\n%s", who, r.Err, r.Stderr, logs())
		}
		out := strings.TrimSpace(r.Stdout)
		c, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return out, string(c)
	}
	bin := testenv.Bin(t)
	d, log := startAsAlice(t, s, filepath.Join(bin, "privnixd"), "--bin-dir", bin)
	logs = log.String
	gotPath, got := build("privnixd")
	// The builder keeps no capability, even in its user namespace, and is
	// confined as any other.
	_, status := build("privnixd", "status.nix")
	for _, want := range []string{"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
		"CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want+"\n") {
			t.Errorf("builder's status lacks %q:\n%s", want, status)
		}
	}
	d.Process.Signal(os.Interrupt)
	d.Wait()
	if !strings.HasPrefix(got, "1000\n100\n/build\nlocalhost\n") {
		t.Errorf("privnixd's build saw:\n%s\nlog:\n%s", got, log.String())
	}
	s.Reset(t)
	_, ndLog := startAsAlice(t, s, "nix-daemon")
	logs = ndLog.String
	wantPath, want := build("nix-daemon")
	if gotPath != wantPath || got != want {
		t.Errorf("privnixd: %s\n%s\nnix-daemon: %s\n%s", gotPath, got, wantPath, want)
	}
}

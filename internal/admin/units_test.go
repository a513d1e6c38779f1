package admin

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unitDir is the repository's systemd/ directory.
func unitDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("../../systemd")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: install Debian's systemd package (apt-get install systemd); " +
			"scripts/setup-test-host.sh should do it")
	}
	return p
}

// fakeRoot is a file system root for `systemd-analyze verify --root`: the
// host's unit library (for sysinit.target and friends), our units in
// /etc/systemd/system, and stand-ins for the programs they run, so that the
// units are verified exactly as written without installing privnix.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	lib := filepath.Join(root, "usr", "lib", "systemd")
	if err := os.MkdirAll(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", lib).CombinedOutput(); err != nil {
		t.Fatalf("copying the unit library: %v\n%s", err, out)
	}
	for _, prog := range []string{"usr/local/bin/privnixd", "bin/kill"} {
		p := filepath.Join(root, prog)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	etc := filepath.Join(root, "etc", "systemd", "system")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"privnix-daemon.socket", "privnix-daemon.service"} {
		b, err := os.ReadFile(filepath.Join(unitDir(t), u))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(etc, u), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestUnitsVerify(t *testing.T) {
	sa := systemdAnalyze(t)
	root := fakeRoot(t)
	for _, u := range []string{"privnix-daemon.socket", "privnix-daemon.service"} {
		t.Run(u, func(t *testing.T) {
			cmd := exec.Command(sa, "verify", "--man=no", "--root="+root, filepath.Join(root, "etc", "systemd", "system", u))
			out, err := cmd.CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) != 0 {
				t.Fatalf("systemd-analyze verify %s: %v\n%s", u, err, out)
			}
		})
	}
}

// The verify above must fail on a broken unit, or it proves nothing.
func TestUnitsVerifyCatchesErrors(t *testing.T) {
	sa := systemdAnalyze(t)
	root := fakeRoot(t)
	bad := filepath.Join(root, "etc", "systemd", "system", "privnix-daemon.service")
	b, _ := os.ReadFile(bad)
	b = []byte(strings.Replace(string(b), "ExecStart=/usr/local/bin/privnixd", "ExecStart=/usr/local/bin/no-such-privnixd", 1))
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", "--root="+root, bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no-such-privnixd") {
		t.Fatalf("verify of a unit with a missing ExecStart: err %v, output %q", err, out)
	}
}

// unitValues reads KEY=VALUE lines of a unit file; repeated keys accumulate.
func unitValues(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(unitDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not KEY=VALUE", name, line)
		}
		m[k] = append(m[k], v)
	}
	return m
}

// The promises the units make, as written in their comments.
func TestUnitSettings(t *testing.T) {
	svc := unitValues(t, "privnix-daemon.service")
	sock := unitValues(t, "privnix-daemon.socket")
	caps := strings.Fields(strings.Join(svc["CapabilityBoundingSet"], " "))
	for _, tc := range []struct {
		unit map[string][]string
		key  string
		want string // "" = must be absent
	}{
		{sock, "ListenStream", "/nix/var/nix/daemon-socket/socket"},
		{sock, "SocketMode", "0666"},
		{svc, "ExecStart", "/usr/local/bin/privnixd --daemon --audit-log /var/log/privnix/audit.log"},
		{svc, "LogsDirectory", "privnix"},
		{svc, "LogsDirectoryMode", "0700"},
		{svc, "ExecReload", "/bin/kill -HUP $MAINPID"},
		{svc, "Requires", "privnix-daemon.socket"},
		{svc, "KillMode", "mixed"},
		{svc, "Delegate", "yes"},
		{svc, "OOMScoreAdjust", "-900"},
		{svc, "NoNewPrivileges", "yes"},
		{svc, "ProtectSystem", "strict"},
		{svc, "ReadWritePaths", "/nix/store /nix/var"},
		{svc, "ReadWritePaths", "/sys/fs/cgroup"},
		{svc, "ProtectHome", "read-only"},
		{svc, "PrivateTmp", "yes"},
		{svc, "RuntimeDirectory", "privnix"},
		{svc, "RuntimeDirectoryMode", "0700"},
		{svc, "ProtectControlGroups", "no"},
		{svc, "Environment", ""},
		{svc, "LockPersonality", ""},         // i686 builds
		{svc, "SystemCallArchitectures", ""}, // i686 builds
		{svc, "ProtectHostname", ""},         // sethostname in the build's UTS namespace
		{svc, "UMask", ""},                   // the socket directory must stay 0755
		{svc, "MemoryDenyWriteExecute", ""},  // JITs in builds
		{svc, "RestrictNamespaces", ""},      // builds
		{svc, "PrivateDevices", ""},          // /dev/kvm
		{svc, "AmbientCapabilities", ""},     // set to empty
		{svc, "DeviceAllow", "/dev/kvm rw"},
	} {
		got := tc.unit[tc.key]
		switch {
		case tc.want == "" && len(got) > 0 && !(len(got) == 1 && got[0] == ""):
			t.Errorf("%s=%q is set; it must not be (see the unit's comments)", tc.key, got)
		case tc.want != "" && !contains(got, tc.want):
			t.Errorf("%s=%q, want a line %s=%s", tc.key, got, tc.key, tc.want)
		}
	}
	want := []string{"CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_READ_SEARCH", "CAP_KILL",
		"CAP_SETPCAP", "CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"}
	if strings.Join(caps, " ") != strings.Join(want, " ") {
		t.Errorf("CapabilityBoundingSet = %v, want %v", caps, want)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// systemd-analyze security rates the service; a change that loosens it past
// today's score fails here (6.2 when written, 6.4 with CAP_SYS_PTRACE for
// runtime GC roots; nix-daemon's own unit scores 9.6).
func TestUnitSecurityScore(t *testing.T) {
	sa := systemdAnalyze(t)
	out, err := exec.Command(sa, "security", "--offline=yes", "--no-pager",
		filepath.Join(unitDir(t), "privnix-daemon.service")).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Overall exposure level") {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for privnix-daemon.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	if score > 6.5 {
		t.Fatalf("exposure level %.1f, want at most 6.5:\n%s", score, out)
	}
	t.Logf("systemd-analyze security: %.1f", score)
}

// install.sh puts both units in place (DESTDIR: files only, no systemctl);
// --dry-run only prints.
func TestInstallScript(t *testing.T) {
	for _, dry := range []bool{false, true} {
		dest := t.TempDir()
		args := []string{filepath.Join(unitDir(t), "install.sh")}
		if dry {
			args = append(args, "--dry-run")
		}
		cmd := exec.Command("sh", args...)
		cmd.Env = append(os.Environ(), "DESTDIR="+dest, "UNITDIR=/etc/systemd/system")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh (dry run %v): %v\n%s", dry, err, out)
		}
		for _, u := range []string{"privnix-daemon.socket", "privnix-daemon.service"} {
			fi, err := os.Stat(filepath.Join(dest, "etc/systemd/system", u))
			switch {
			case dry && err == nil:
				t.Errorf("--dry-run installed %s", u)
			case !dry && (err != nil || fi.Mode().Perm() != 0o644):
				t.Errorf("%s: %v, mode %v; want it installed 0644", u, err, fi)
			}
		}
		if strings.Contains(string(out), "systemctl") {
			t.Errorf("with DESTDIR, install.sh ran or planned systemctl:\n%s", out)
		}
	}
}

package conf

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// showConfig runs Nix's own `nix show-config` on a nix.conf with the given
// text (and an includable b.conf) and returns the settings it prints, whether
// it failed, and its stderr.
func showConfig(t *testing.T, nix, text, included string) (map[string]string, bool, string) {
	t.Helper()
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc")
	for _, d := range []string{etc, filepath.Join(dir, "state"), filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(etc, "nix.conf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "b.conf"), []byte(included), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nix, "--extra-experimental-features", "nix-command", "show-config")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(dir, "home"),
		"NIX_CONF_DIR=" + etc, "NIX_STATE_DIR=" + filepath.Join(dir, "state"),
		"NIX_USER_CONF_FILES=/dev/null", "XDG_CONFIG_HOME=" + filepath.Join(dir, "home")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := map[string]string{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " = "); ok {
			out[k] = v
		} else if k, ok := strings.CutSuffix(sc.Text(), " ="); ok {
			out[k] = ""
		}
	}
	return out, err != nil, stderr.String()
}

// unknownNames extracts the setting names from "unknown setting" warnings,
// leaving out privnix's own (which Nix does not know).
func unknownNames(lines []string, marker string) string {
	var names []string
	for _, l := range lines {
		if _, rest, ok := strings.Cut(l, marker); ok {
			if name := strings.TrimSuffix(rest, "'"); !strings.HasPrefix(name, "privnix-") {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names) // Nix reports them in name order
	return strings.Join(names, " ")
}

// TestAgainstNix checks that our reading of nix.conf gives the values Nix 2.8's
// own `nix show-config` prints, for every Nix setting privnix models.
func TestAgainstNix(t *testing.T) {
	if testing.Short() {
		t.Skip("differential test against nix-bin runs only without -short")
	}
	nix, err := exec.LookPath("nix")
	if err != nil {
		t.Fatalf("the differential test needs Nix 2.8 (Debian's nix-bin) installed: %v", err)
	}
	base, failed, stderr := showConfig(t, nix, "", "")
	if failed {
		t.Fatalf("nix show-config failed: %s", stderr)
	}
	h := Host{Root: os.Geteuid() == 0, NumCPU: runtime.NumCPU(), System: base["system"],
		ExtraPlatforms: strings.Fields(base["extra-platforms"]),
		KVM:            strings.Contains(" "+base["system-features"]+" ", " kvm "),
		ConfDir:        "unused"}
	tests := []struct{ name, text, included string }{
		{"empty", "", ""},
		{"users", "allowed-users = alice @wheel\ntrusted-users = root @admins bob\nbuild-users-group = pnx\n", ""},
		{"aliases", "build-max-jobs = 3\nbuild-cores = 5\nbuild-use-sandbox = relaxed\nbinary-caches = http://a http://b\n" +
			"trusted-binary-caches = http://z http://y\nbinary-cache-public-keys = k:1 j:2\nbuild-timeout = 9\n" +
			"build-max-silent-time = 7\ngc-keep-outputs = true\ngc-keep-derivations = false\nbuild-fallback = true\n" +
			"build-use-substitutes = false\nbuild-repeat = 2\nbuild-max-log-size = 11\nbuild-chroot-dirs = /b /a\n", ""},
		{"extra", "substituters = a\nextra-substituters = b\nextra-binary-caches = c\nextra-trusted-users = x\n" +
			"extra-extra-platforms = zz\nextra-system-features = aa\nextra-sandbox-paths = /q\nextra-foo = 1\nextra-max-jobs = 2\n", ""},
		{"order", "extra-substituters = b\nsubstituters = a\ntimeout = 1\ntimeout = 2\n", ""},
		{"values", "max-jobs = auto\ncores = 007\nsandbox = false\nkeep-failed = yes\nkeep-going = 1\nrequire-sigs = no\n" +
			"timeout = -1\nmin-free = 100\nmax-free = 200\nlog-lines = 3\ngc-reserved-space = -5\nsystem = aarch64-linux\n" +
			"secret-key-files = /k1 /k2\nsandbox-fallback = false\nconnect-timeout = 4\nbuilders =\nbuild-poll-interval = 9\n", ""},
		{"include", "include b.conf\n!include nope.conf\nmax-jobs = 5 # five\n", "cores = 3\nmax-jobs = 9\nsubstituters =\n"},
		{"bad bool", "keep-failed = maybe\n", ""},
		{"bad int", "cores = -1\n", ""},
		{"bad max-jobs", "max-jobs = many\n", ""},
		{"bad sandbox", "sandbox = yes\n", ""},
		{"bad line", "a=b\n", ""},
		{"missing include", "include nope.conf\n", ""},
		{"bad included line", "include b.conf\n", "bad line\n"},
		{"bad other bool", "auto-optimise-store = maybe\n", ""},
		{"bad other uint", "tarball-ttl = -1\n", ""},
		{"bad other uint64", "http-connections = x\n", ""},
		{"unknown names", "ssl-cert-file = x\nbuild-keep-failed = 1\nextra-auto-optimise-store = true\n" +
			"extra-allowed-uris = a\nhttp-connections = 5\nbuild-keep-log = false\nprivnix-frontend-pool = 3\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, nixFailed, nixErr := showConfig(t, nix, tt.text, tt.included)
			etc := "/x/etc"
			files := map[string]string{etc + "/nix.conf": tt.text, etc + "/b.conf": tt.included}
			got, warns, err := Load(etc+"/nix.conf", memFS(files), h)
			if nixFailed != (err != nil) {
				t.Fatalf("nix failed=%v (%s); we: %v", nixFailed, strings.TrimSpace(nixErr), err)
			}
			if err != nil {
				return
			}
			if w, n := unknownNames(warns, ": unknown setting '"), unknownNames(strings.Split(nixErr, "\n"), "warning: unknown setting '"); w != n {
				t.Errorf("unknown settings: we warn about [%s], nix about [%s]", w, n)
			}
			for _, name := range Names() {
				if strings.HasPrefix(name, "privnix-") || name == "builders" || name == "experimental-features" {
					continue // not Nix's, or depends on the command line/NIX_CONF_DIR
				}
				g, _ := got.Get(name)
				if w, ok := want[name]; !ok || g != w {
					t.Errorf("%s: we say %q, nix says %q", name, g, w)
				}
			}
		})
	}
}

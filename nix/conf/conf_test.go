package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

// memFS is a ReadFunc over an in-memory map of absolute paths.
func memFS(files map[string]string) ReadFunc {
	return func(p string) ([]byte, error) {
		if d, ok := files[p]; ok {
			return []byte(d), nil
		}
		return nil, fmt.Errorf("open %s: %w", p, fs.ErrNotExist)
	}
}

var host = Host{Root: true, NumCPU: 2, System: "x86_64-linux", KVM: true,
	ExtraPlatforms: []string{"i686-linux"}, ConfDir: "/etc/nix"}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    []Line
		wantErr string
	}{
		{"simple", map[string]string{"/c/nix.conf": "a = b\n"},
			[]Line{{"a", "b", "/c/nix.conf", 1}}, ""},
		{"whitespace rejoined", map[string]string{"/c/nix.conf": "\n  a \t=  x   y\tz  \r\n"},
			[]Line{{"a", "x y z", "/c/nix.conf", 2}}, ""},
		{"comment anywhere", map[string]string{"/c/nix.conf": "# c\na = b # c\nc = http://x#frag\n"},
			[]Line{{"a", "b", "/c/nix.conf", 2}, {"c", "http://x", "/c/nix.conf", 3}}, ""},
		{"empty value", map[string]string{"/c/nix.conf": "a =\n"},
			[]Line{{"a", "", "/c/nix.conf", 1}}, ""},
		{"no spaces around =", map[string]string{"/c/nix.conf": "a = 1\na=b\n"},
			nil, "/c/nix.conf:2: illegal configuration line 'a=b'"},
		{"single token", map[string]string{"/c/nix.conf": "keep-failed\n"},
			nil, "/c/nix.conf:1: illegal configuration line 'keep-failed'"},
		{"second token not =", map[string]string{"/c/nix.conf": "keep-failed yes\n"},
			nil, "/c/nix.conf:1: illegal configuration line 'keep-failed yes'"},
		{"include relative", map[string]string{
			"/c/nix.conf":   "a = 1\ninclude sub/x.conf\nb = 2\n",
			"/c/sub/x.conf": "include ../y.conf\nx = 3\n",
			"/c/y.conf":     "y = 4\n"},
			[]Line{{"a", "1", "/c/nix.conf", 1}, {"y", "4", "/c/y.conf", 1}, {"x", "3", "/c/sub/x.conf", 2}, {"b", "2", "/c/nix.conf", 3}}, ""},
		{"include absolute", map[string]string{"/c/nix.conf": "include /d/z.conf\n", "/d/z.conf": "z = 1\n"},
			[]Line{{"z", "1", "/d/z.conf", 1}}, ""},
		{"include missing", map[string]string{"/c/nix.conf": "include nope.conf\n"},
			nil, "/c/nix.conf:1: file '/c/nope.conf' included from '/c/nix.conf' not found"},
		{"!include missing", map[string]string{"/c/nix.conf": "!include nope.conf\na = b\n"},
			[]Line{{"a", "b", "/c/nix.conf", 2}}, ""},
		{"include without file", map[string]string{"/c/nix.conf": "include\n"},
			nil, "/c/nix.conf:1: illegal configuration line 'include'"},
		{"include two files", map[string]string{"/c/nix.conf": "include a b\n"},
			nil, "/c/nix.conf:1: illegal configuration line 'include a b'"},
		{"include loop", map[string]string{"/c/nix.conf": "include a.conf\n", "/c/a.conf": "include nix.conf\n"},
			nil, "/c/a.conf:1: file '/c/nix.conf' includes itself (include loop)"},
		{"error in included file", map[string]string{"/c/nix.conf": "include a.conf\n", "/c/a.conf": "ok = 1\nbad line\n"},
			nil, "/c/a.conf:2: illegal configuration line 'bad line'"},
		{"same file twice is fine", map[string]string{"/c/nix.conf": "include a.conf\ninclude a.conf\n", "/c/a.conf": "a = 1\n"},
			[]Line{{"a", "1", "/c/a.conf", 1}, {"a", "1", "/c/a.conf", 1}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("/c/nix.conf", memFS(tt.files))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseIncludeLimits(t *testing.T) {
	deep := map[string]string{}
	for i := 0; i < MaxIncludeDepth+2; i++ {
		deep[fmt.Sprintf("/c/%d.conf", i)] = fmt.Sprintf("include %d.conf\n", i+1)
	}
	deep["/c/nix.conf"] = "include 0.conf\n"
	if _, err := Parse("/c/nix.conf", memFS(deep)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep nesting: error = %v", err)
	}
	// A bomb: every level includes the next one 4 times (4^10 includes).
	bomb := map[string]string{"/c/nix.conf": strings.Repeat("include 0.conf\n", 4)}
	for i := 0; i < 10; i++ {
		bomb[fmt.Sprintf("/c/%d.conf", i)] = strings.Repeat(fmt.Sprintf("include %d.conf\n", i+1), 4)
	}
	bomb["/c/10.conf"] = "a = b\n"
	if _, err := Parse("/c/nix.conf", memFS(bomb)); err == nil || !strings.Contains(err.Error(), "includes in total") {
		t.Errorf("include bomb: error = %v", err)
	}
	if _, err := ParseBytes("/c/nix.conf", []byte("include x\n"), nil); err == nil || !strings.Contains(err.Error(), "no file reader") {
		t.Errorf("nil reader: error = %v", err)
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		lines   string // nix.conf text
		setting string
		want    string
		wantErr string
	}{
		{"", "max-jobs", "1", ""},
		{"max-jobs = 4", "max-jobs", "4", ""},
		{"max-jobs = auto", "max-jobs", "2", ""},
		{"max-jobs = +3", "max-jobs", "3", ""},
		{"build-max-jobs = 5", "max-jobs", "5", ""},
		{"max-jobs = x", "", "", "configuration setting 'max-jobs' should be 'auto' or an integer"},
		{"max-jobs = -1", "", "", "configuration setting 'max-jobs' should be 'auto' or an integer"},
		{"extra-max-jobs = 3", "max-jobs", "1", ""}, // unknown setting: a warning only
		{"build-cores = 7", "cores", "7", ""},
		{"cores = 007", "cores", "7", ""},
		{"cores = -1", "", "", "setting 'cores' has invalid value '-1'"},
		{"cores = 0x10", "", "", "setting 'cores' has invalid value '0x10'"},
		{"cores = 99999999999", "", "", "setting 'cores' has invalid value '99999999999'"},
		{"cores = 4294967295", "cores", "4294967295", ""},
		{"sandbox = relaxed", "sandbox", "relaxed", ""},
		{"build-use-sandbox = false", "sandbox", "false", ""},
		{"build-use-chroot = true", "sandbox", "true", ""},
		{"sandbox = yes", "", "", "option 'sandbox' has invalid value 'yes'"},
		{"keep-failed = yes", "keep-failed", "true", ""},
		{"keep-failed = 1", "keep-failed", "true", ""},
		{"keep-derivations = no", "keep-derivations", "false", ""},
		{"gc-keep-outputs = true", "keep-outputs", "true", ""},
		{"keep-failed = TRUE", "", "", "Boolean setting 'keep-failed' has invalid value 'TRUE'"},
		{"keep-failed = true false", "", "", "Boolean setting 'keep-failed' has invalid value 'true false'"},
		{"timeout = -1", "timeout", "-1", ""},
		{"build-timeout = 9", "timeout", "9", ""},
		{"timeout = 1.5", "", "", "setting 'timeout' has invalid value '1.5'"},
		{"build-max-silent-time = 7", "max-silent-time", "7", ""},
		{"max-free = -1", "", "", "setting 'max-free' has invalid value '-1'"},
		{"gc-reserved-space = -5", "gc-reserved-space", "-5", ""},
		{"substituters = a b a", "substituters", "a b a", ""},
		{"binary-caches = http://x", "substituters", "http://x", ""},
		{"substituters =", "substituters", "", ""},
		{"substituters = a\nextra-substituters = b", "substituters", "a b", ""},
		{"extra-substituters = b\nsubstituters = a", "substituters", "a", ""}, // Nix 2.8 applies lines in order
		{"extra-binary-caches = http://z", "substituters", "https://cache.nixos.org/ http://z", ""},
		{"trusted-binary-caches = b a", "trusted-substituters", "a b", ""},
		{"binary-cache-public-keys = k:1", "trusted-public-keys", "k:1", ""},
		{"sandbox-paths = /b /a /b", "sandbox-paths", "/a /b", ""},
		{"build-chroot-dirs = /a\nextra-sandbox-paths = /c", "sandbox-paths", "/a /c", ""},
		{"extra-build-sandbox-paths = /x", "sandbox-paths", "/x", ""},
		{"system-features = z a a", "system-features", "a z", ""},
		{"extra-extra-platforms = bar", "extra-platforms", "bar i686-linux", ""},
		{"extra-platforms = bar", "extra-platforms", "bar", ""},
		{"extra-trusted-users = foo", "trusted-users", "root foo", ""},
		{"build-users-group = a b", "build-users-group", "a b", ""},
		{"build-users-group =", "build-users-group", "", ""},
		{"log-lines = -2", "", "", "setting 'log-lines' has invalid value '-2'"},
		{"privnix-frontend-uids = 100-200", "privnix-frontend-uids", "100-200", ""},
		{"privnix-frontend-uids = 200-100", "", "", "must satisfy 0 < LO <= HI"},
		{"privnix-frontend-uids = 0-100", "", "", "must satisfy 0 < LO <= HI"},
		{"privnix-build-uids = 5", "", "", "not of the form LO-HI"},
		{"privnix-storeproc-uids = 1879048192-1879048200", "", "", "overlap"},
		{"privnix-frontend-pool = 0", "", "", "'privnix-frontend-pool' must be at least 1"},
		{"privnix-max-connections-per-user = 3", "privnix-max-connections-per-user", "3", ""},
		{"auto-optimise-store = true", "auto-optimise-store", "true", ""},
		{"build-keep-log = false", "keep-build-log", "false", ""},
		{"allowed-uris = a\nextra-allowed-uris = b", "allowed-uris", "a b", ""},
	}
	for _, tt := range tests {
		t.Run(tt.lines, func(t *testing.T) {
			s, _, err := Load("/etc/nix/nix.conf", memFS(map[string]string{"/etc/nix/nix.conf": tt.lines}), host)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Get(tt.setting); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.setting, got, tt.want)
			}
		})
	}
}

func TestLoadWarningsAndErrors(t *testing.T) {
	files := map[string]string{"/etc/nix/nix.conf": "foo = 1\n\nextra-keep-failed = true\ninclude b.conf\n",
		"/etc/nix/b.conf": "keep-going = true\nbuild-enforce-determinism = x\n"}
	s, warns, err := Load("/etc/nix/nix.conf", memFS(files), host)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/etc/nix/nix.conf:1: unknown setting 'foo'",
		"/etc/nix/nix.conf:3: unknown setting 'extra-keep-failed'",
		"/etc/nix/b.conf:2: unknown setting 'build-enforce-determinism'"}
	if !reflect.DeepEqual(warns, want) {
		t.Errorf("warnings = %q, want %q", warns, want)
	}
	if !s.KeepGoing || s.KeepFailed {
		t.Errorf("keep-going=%v keep-failed=%v, want true false", s.KeepGoing, s.KeepFailed)
	}
	_, _, err = Load("/etc/nix/nix.conf", memFS(map[string]string{"/etc/nix/nix.conf": "a = 1\ntimeout = soon\n"}), host)
	if err == nil || err.Error() != "/etc/nix/nix.conf:2: invalid value: setting 'timeout' has invalid value 'soon'" {
		t.Errorf("bad value: error = %v", err)
	}
	s, warns, err = Load("/etc/nix/nix.conf", memFS(nil), host)
	if err != nil || len(warns) != 0 || !reflect.DeepEqual(s, Defaults(host)) {
		t.Errorf("missing nix.conf: got %v, %v, want defaults", warns, err)
	}
	other := func(string) ([]byte, error) { return nil, errors.New("permission denied") }
	if _, _, err := Load("/etc/nix/nix.conf", other, host); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("unreadable nix.conf: error = %v", err)
	}
}

func TestDefaults(t *testing.T) {
	want := map[string]string{
		"allowed-users": "*", "trusted-users": "root", "build-users-group": "nixbld", "max-jobs": "1",
		"cores": "2", "sandbox": "true", "sandbox-paths": "", "substituters": "https://cache.nixos.org/",
		"trusted-substituters": "", "trusted-public-keys": DefaultTrustedPublicKey, "secret-key-files": "",
		"require-sigs": "true", "keep-outputs": "false", "keep-derivations": "true", "keep-failed": "false",
		"timeout": "0", "max-silent-time": "0", "min-free": "0", "max-free": "18446744073709551615",
		"system": "x86_64-linux", "extra-platforms": "i686-linux", "system-features": "benchmark big-parallel kvm nixos-test",
		"log-lines": "10", "gc-reserved-space": "8388608", "builders": "@/etc/nix/machines",
		"privnix-frontend-uids": "1879048192-1879113727", "privnix-storeproc-uids": "1879113728-1879179263",
		"privnix-build-uids": "1879179264-1879244799", "privnix-max-connections-per-user": "64",
		"privnix-frontend-pool": "4",
	}
	s := Defaults(host)
	for name, v := range want {
		if got, ok := s.Get(name); !ok || got != v {
			t.Errorf("default %s = %q, want %q", name, got, v)
		}
	}
	if err := s.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if Defaults(Host{}).BuildUsersGroup != "" {
		t.Errorf("build-users-group defaults to nixbld for a non-root daemon")
	}
}

func TestApplyUnknownAndClone(t *testing.T) {
	s := Defaults(host)
	for _, name := range []string{"foo", "extra-foo", "extra-keep-failed", "extra-auto-optimise-store", "build-keep-failed"} {
		if err := s.Apply(name, "1"); !errors.Is(err, ErrUnknownSetting) || err.Error() != "unknown setting '"+name+"'" {
			t.Errorf("Apply(%q): error = %v, want unknown setting", name, err)
		}
	}
	c := s.Clone()
	for _, l := range [][2]string{{"extra-substituters", "x"}, {"extra-trusted-users", "y"}, {"nix-path", "z"}} {
		if err := c.Apply(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(s, Defaults(host)) {
		t.Errorf("changing a clone changed the original")
	}
}

func TestCanonical(t *testing.T) {
	tests := map[string]string{"binary-caches": "substituters", "substituters": "substituters",
		"build-timeout": "timeout", "env-keep-derivations": "keep-env-derivations", "http2": "http2", "nope": ""}
	for in, want := range tests {
		if got, ok := Canonical(in); got != want || ok != (want != "") {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if n := Names(); len(n) != len(table) || n[0] != "allowed-users" {
		t.Errorf("Names() = %v", n)
	}
}

func TestApplyOther(t *testing.T) {
	tests := []struct{ name, value, wantErr string }{
		{"auto-optimise-store", "true", ""},
		{"auto-optimise-store", "maybe", "Boolean setting 'auto-optimise-store' has invalid value 'maybe'"},
		{"tarball-ttl", "4294967296", "setting 'tarball-ttl' has invalid value '4294967296'"},
		{"http-connections", "-1", "setting 'http-connections' has invalid value '-1'"},
		{"narinfo-cache-negative-ttl", "+5", ""},
		{"sandbox-dev-shm-size", "1G", ""},
		{"extra-nix-path", "a=b", ""},
		{"extra-store", "x", "unknown setting 'extra-store'"},
	}
	for _, tt := range tests {
		err := Defaults(host).Apply(tt.name, tt.value)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Apply(%q, %q) = %v, want %q", tt.name, tt.value, err, tt.wantErr)
		}
	}
}

func TestLoadAll(t *testing.T) {
	files := memFS(map[string]string{
		"/etc/nix/nix.conf":     "max-jobs = 3\nsubstituters = a\n",
		"/etc/nix/privnix.conf": "privnix-frontend-pool = 9\nextra-substituters = b\nnope = 1\n",
	})
	s, warns, err := LoadAll([]string{"/etc/nix/nix.conf", "/etc/nix/missing.conf", "/etc/nix/privnix.conf"}, files, host)
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxJobs != 3 || s.FrontendPool != 9 || strings.Join(s.Substituters, " ") != "a b" ||
		!reflect.DeepEqual(warns, []string{"/etc/nix/privnix.conf:3: unknown setting 'nope'"}) {
		t.Errorf("got max-jobs %d pool %d substituters %v warnings %q", s.MaxJobs, s.FrontendPool, s.Substituters, warns)
	}
	if _, _, err := LoadAll([]string{"/etc/nix/nix.conf", "/etc/nix/bad.conf"},
		memFS(map[string]string{"/etc/nix/nix.conf": "", "/etc/nix/bad.conf": "x"}), host); err == nil {
		t.Errorf("a syntax error in the second file was not reported")
	}
}

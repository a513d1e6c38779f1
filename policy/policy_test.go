package policy

import (
	"reflect"
	"strings"
	"testing"

	"privnix/nix/conf"
)

func settings(t *testing.T, lines ...string) *conf.Settings {
	t.Helper()
	s := conf.Defaults(conf.Host{Root: true, NumCPU: 8})
	for _, l := range lines {
		name, value, _ := strings.Cut(l, " = ")
		if err := s.Apply(name, value); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

var (
	root  = Peer{UID: 0, GID: 0, User: "root", PrimaryGroup: "root", Groups: []string{"root"}}
	alice = Peer{UID: 986, GID: 993, User: "alice", PrimaryGroup: "users", Groups: []string{"users"}}
	bob   = Peer{UID: 985, GID: 993, User: "bob", PrimaryGroup: "users", Groups: []string{"users", "trusted"}}
	carol = Peer{UID: 984, GID: 991, User: "carol", PrimaryGroup: "carol", Groups: []string{"carol"}}
	bld1  = Peer{UID: 983, GID: 990, User: "nixbld1", PrimaryGroup: "nixbld", Groups: []string{"nixbld"}}
)

func TestConnect(t *testing.T) {
	tests := []struct {
		name             string
		peer             Peer
		conf             []string
		allowed, trusted bool
		rule, reason     string
	}{
		{"root is trusted by default", root, nil, true, true, "daemon-uid", ""},
		{"root trusted by trusted-users when daemon is not root", root, nil, true, true, "trusted-users", "matches 'root' in 'trusted-users'"},
		{"anyone allowed by default", alice, nil, true, false, "allowed-users", "matches '*' in 'allowed-users'"},
		{"user by name", alice, []string{"allowed-users = alice"}, true, false, "allowed-users", "matches 'alice'"},
		{"not listed", carol, []string{"allowed-users = alice @users"}, false, false, "allowed-users",
			"user 'carol' is not allowed to connect to the Nix daemon (not in 'allowed-users')"},
		{"@primary group", alice, []string{"allowed-users = @users"}, true, false, "allowed-users", "matches '@users'"},
		{"@supplementary group trusted", bob, []string{"allowed-users = root", "trusted-users = @trusted"}, true, true, "trusted-users", "matches '@trusted' in 'trusted-users'"},
		{"trusted need not be allowed", bob, []string{"allowed-users = ", "trusted-users = bob"}, true, true, "trusted-users", ""},
		{"@group not matching", alice, []string{"allowed-users = @trusted"}, false, false, "allowed-users", "not in 'allowed-users'"},
		{"bare @ matches nothing", alice, []string{"allowed-users = @"}, false, false, "allowed-users", ""},
		{"build user refused", bld1, nil, false, false, "build-users-group",
			"user 'nixbld1' is not allowed to connect to the Nix daemon (member of 'build-users-group' 'nixbld'"},
		{"trusted build user still refused", bld1, []string{"trusted-users = nixbld1"}, false, false, "build-users-group", ""},
		{"listed member of build group refused", Peer{UID: 1000, GID: 100, User: "x", PrimaryGroup: "users", Groups: []string{"users", "nixbld"}},
			nil, false, false, "build-users-group", ""},
		{"empty build-users-group refuses nobody", bld1, []string{"build-users-group = "}, true, false, "allowed-users", ""},
		{"nameless user matched by uid", Peer{UID: 4242, GID: 4242}, []string{"allowed-users = 4242"}, true, false, "allowed-users", "user '4242'"},
		{"frontend uid refused", Peer{UID: conf.DefaultFrontendUIDs.Lo, GID: 5}, nil, false, false, "privnix-frontend-uids", "reserves for its own processes"},
		{"storeproc gid refused", Peer{UID: 5000, GID: conf.DefaultStoreprocUIDs.Hi, User: "u"}, nil, false, false, "privnix-storeproc-uids", "user 'u'"},
		{"build uid refused even if trusted", Peer{UID: conf.DefaultBuildUIDs.Lo + 7, User: "b"}, []string{"trusted-users = *"}, false, false, "privnix-build-uids", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			daemonUID := uint32(0)
			if strings.Contains(tt.name, "daemon is not root") {
				daemonUID = 999
			}
			allowed, trusted, d := Connect(tt.peer, settings(t, tt.conf...), daemonUID)
			if allowed != tt.allowed || trusted != tt.trusted || d.Allow != tt.allowed || d.Rule != tt.rule || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("got allowed=%v trusted=%v %+v; want %v %v rule %q reason ~%q", allowed, trusted, d, tt.allowed, tt.trusted, tt.rule, tt.reason)
			}
			if (d.Err() == nil) != tt.allowed || (!tt.allowed && d.Err().Error() != d.Reason) {
				t.Errorf("Err() = %v for %+v", d.Err(), d)
			}
		})
	}
}

func TestFilterOverrides(t *testing.T) {
	s := settings(t, "substituters = https://cache.nixos.org/ http://a", "trusted-substituters = http://t/ http://u")
	tests := []struct {
		name      string
		trusted   bool
		in        []Override
		want      []Override
		wantWarns []string
	}{
		{"untrusted allowed names", false,
			[]Override{{"connect-timeout", "5"}, {"repeat", "1"}, {"timeout", "10"}},
			[]Override{{"connect-timeout", "5"}, {"repeat", "1"}, {"timeout", "10"}}, nil},
		{"untrusted alias does not count", false,
			[]Override{{"build-timeout", "10"}},
			nil, []string{"ignoring the client-specified setting 'build-timeout', because it is a restricted setting and you are not a trusted user"}},
		{"untrusted restricted", false,
			[]Override{{"sandbox", "false"}, {"require-sigs", "false"}, {"trusted-public-keys", "k:1"}, {"max-silent-time", "5"}},
			nil, []string{
				"ignoring the client-specified setting 'sandbox', because it is a restricted setting and you are not a trusted user",
				"ignoring the client-specified setting 'require-sigs', because it is a restricted setting and you are not a trusted user",
				"ignoring the client-specified setting 'trusted-public-keys', because it is a restricted setting and you are not a trusted user",
				"ignoring the client-specified setting 'max-silent-time', because it is a restricted setting and you are not a trusted user"}},
		{"untrusted builders only empty", false,
			[]Override{{"builders", ""}, {"builders", "ssh://x"}},
			[]Override{{"builders", ""}},
			[]string{"ignoring the client-specified setting 'builders', because it is a restricted setting and you are not a trusted user"}},
		{"untrusted substituters filtered", false,
			[]Override{{"substituters", "https://example.org http://a http://t http://u https://cache.nixos.org"}},
			[]Override{{"substituters", "http://a http://t http://u https://cache.nixos.org"}},
			[]string{"ignoring untrusted substituter 'https://example.org'"}},
		{"untrusted binary-caches alias filtered", false,
			[]Override{{"binary-caches", "http://evil http://also-evil"}},
			[]Override{{"substituters", ""}},
			[]string{"ignoring untrusted substituter 'http://evil'", "ignoring untrusted substituter 'http://also-evil'"}},
		{"untrusted extra-substituters ignored", false,
			[]Override{{"extra-substituters", "http://a"}},
			nil, []string{"ignoring the client-specified setting 'extra-substituters', because it is a restricted setting and you are not a trusted user"}},
		{"trusted anything", true,
			[]Override{{"sandbox", "false"}, {"binary-caches", "http://evil"}, {"build-timeout", "3"}, {"extra-substituters", "http://x"}},
			[]Override{{"sandbox", "false"}, {"substituters", "http://evil"}, {"timeout", "3"}, {"extra-substituters", "http://x"}}, nil},
		{"never from clients", true,
			[]Override{{"ssh-auth-sock", "/x"}, {"experimental-features", "ca-derivations"}, {"extra-experimental-features", "flakes"}},
			nil, nil},
		{"privnix settings and plugins from nobody", true,
			[]Override{{"privnix-frontend-uids", "1-2"}, {"extra-privnix-x", "1"}, {"plugin-files", "/x.so"}},
			nil, []string{
				"ignoring the client-specified setting 'privnix-frontend-uids', because it can only be set in the daemon's nix.conf",
				"ignoring the client-specified setting 'extra-privnix-x', because it can only be set in the daemon's nix.conf",
				"ignoring the client-specified setting 'plugin-files', because it can only be set in the daemon's nix.conf"}},
		{"bad value is a warning", false,
			[]Override{{"timeout", "soon"}, {"repeat", "2"}},
			[]Override{{"repeat", "2"}},
			[]string{"invalid value: setting 'timeout' has invalid value 'soon'"}},
		{"unknown name silently ignored", true,
			[]Override{{"no-such-setting", "1"}}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warns := FilterOverrides(tt.trusted, tt.in, s)
			if !reflect.DeepEqual(got, tt.want) || !reflect.DeepEqual(warns, tt.wantWarns) {
				t.Errorf("got %q %q\nwant %q %q", got, warns, tt.want, tt.wantWarns)
			}
		})
	}
	if s.Timeout != 0 || strings.Join(s.Substituters, " ") != "https://cache.nixos.org/ http://a" {
		t.Errorf("FilterOverrides changed the admin's settings")
	}
}

func TestClampJobs(t *testing.T) {
	tests := []struct {
		trusted            bool
		adminJobs, adminC  string
		jobs, cores        uint64
		wantJobs, wantCore uint32
	}{
		{false, "4", "8", 16, 32, 4, 8},
		{false, "4", "8", 2, 3, 2, 3},
		{false, "4", "8", 0, 0, 0, 8}, // cores 0 = all cores: capped
		{false, "4", "0", 9, 0, 4, 0}, // admin allows all cores
		{false, "4", "0", 9, 99, 4, 99},
		{true, "4", "8", 16, 32, 16, 32},
		{true, "4", "8", 1 << 40, 0, 1<<32 - 1, 0},
	}
	for _, tt := range tests {
		s := settings(t, "max-jobs = "+tt.adminJobs, "cores = "+tt.adminC)
		j, c := ClampJobs(tt.trusted, tt.jobs, tt.cores, s)
		if j != tt.wantJobs || c != tt.wantCore {
			t.Errorf("ClampJobs(%v, %d, %d) with admin %s/%s = %d, %d; want %d, %d",
				tt.trusted, tt.jobs, tt.cores, tt.adminJobs, tt.adminC, j, c, tt.wantJobs, tt.wantCore)
		}
	}
}

func TestConnectionLimit(t *testing.T) {
	s := settings(t, "privnix-max-connections-per-user = 2")
	for open, want := range []bool{true, true, false, false} {
		d := ConnectionLimit(alice, open, s)
		if d.Allow != want || d.Rule != "privnix-max-connections-per-user" {
			t.Errorf("open=%d: %+v, want allow=%v", open, d, want)
		}
	}
	if d := ConnectionLimit(alice, 2, s); d.Reason != "user 'alice' already has 2 connections to the Nix daemon (limit set by 'privnix-max-connections-per-user')" {
		t.Errorf("reason = %q", d.Reason)
	}
}

package admin

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// doctorFixture is a private store set up by setup, with its own build users
// group of two users and stand-ins for the installed privnix binaries.
type doctorFixture struct {
	*testStore
	group   string
	opts    DoctorOptions
	bindir  string
	libexec string
}

// newDoctorFixture makes the fixture; with group == "" it makes a build
// users group of its own (for cases that change users), else it uses group's.
func newDoctorFixture(t *testing.T, group string) *doctorFixture {
	t.Helper()
	g := group
	if g == "" {
		g = uniqueName("pnxc")
		removeAfter(t, buildUserNames(g, 2), g)
	}
	s := newTestStore(t, "build-users-group = "+g+"\nmax-jobs = 2\n", "")
	s.setup(t, SetupOptions{BuildUsers: 2})
	bin := t.TempDir()
	os.Chmod(bin, 0o755)
	libexec := filepath.Join(bin, "libexec")
	os.Mkdir(libexec, 0o755)
	for _, f := range []string{filepath.Join(bin, "privnixd"), filepath.Join(libexec, "privnix-frontend"), filepath.Join(libexec, "privnix-storeproc")} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &doctorFixture{testStore: s, group: g, bindir: bin, libexec: libexec,
		opts: DoctorOptions{Privnixd: filepath.Join(bin, "privnixd"), LibexecDir: libexec}}
}

func (f *doctorFixture) conf(t *testing.T, nixConf, privnixConf string) {
	t.Helper()
	if err := os.WriteFile(f.Paths.NixConf(), []byte(nixConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Paths.PrivnixConf(), []byte(privnixConf), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *doctorFixture) baseConf() string {
	return "build-users-group = " + f.group + "\nmax-jobs = 2\n"
}

func ids(r *Report) []string {
	var out []string
	for _, f := range r.Findings {
		if !slices.Contains(out, f.Check) {
			out = append(out, f.Check)
		}
	}
	slices.Sort(out)
	return out
}

// Each case breaks a fresh, correctly set-up private store in one way and
// expects doctor to report exactly that, with a message and a fix.
func TestDoctorFindsEachProblem(t *testing.T) {
	requireRoot(t)
	// Cases that do not change users share one build users group.
	shared := uniqueName("pnxc")
	removeAfter(t, buildUserNames(shared, 2), shared)
	newDoctorFixture(t, shared)
	const ownUsers = "own-users: "
	for _, tc := range []struct {
		name    string // ownUsers prefix: the case changes users, so it gets a group of its own
		breakIt func(t *testing.T, f *doctorFixture)
		want    []string // check ids; empty = doctor passes
	}{
		{"setup then doctor passes", func(t *testing.T, f *doctorFixture) {}, nil},
		{"unknown setting", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"no-such-setting = 1\n", "")
		}, []string{"conf-warnings"}},
		{"privnix setting in nix.conf", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"privnix-frontend-pool = 2\n", "")
		}, []string{"privnix-setting-in-nix-conf"}},
		{"build users group missing", func(t *testing.T, f *doctorFixture) {
			f.conf(t, "build-users-group = "+uniqueName("pnxn")+"\n", "")
		}, []string{"build-group-missing"}},
		{"build users group empty", func(t *testing.T, f *doctorFixture) {
			e := uniqueName("pnxm")
			newGroup(t, e)
			f.conf(t, "build-users-group = "+e+"\n", "")
		}, []string{"build-group-empty"}},
		{ownUsers + "a person in the build users group", func(t *testing.T, f *doctorFixture) {
			p := uniqueName("pnxp")
			newGroup(t, p)
			newUser(t, p, p, "/bin/bash", f.group)
		}, []string{"build-group-extra-member"}},
		{"fewer build users than max-jobs", func(t *testing.T, f *doctorFixture) {
			f.conf(t, "build-users-group = "+f.group+"\nmax-jobs = 5\n", "")
		}, []string{"build-users-too-few"}},
		{ownUsers + "build user in another group", func(t *testing.T, f *doctorFixture) {
			o := uniqueName("pnxo")
			newGroup(t, o)
			run(t, "usermod", "--append", "--groups", o, f.group+"1")
		}, []string{"build-user-other-groups"}},
		{ownUsers + "build user with a login shell", func(t *testing.T, f *doctorFixture) {
			run(t, "usermod", "--shell", "/bin/bash", f.group+"1")
		}, []string{"build-user-login"}},
		{ownUsers + "build user with a home", func(t *testing.T, f *doctorFixture) {
			run(t, "usermod", "--home", "/home/"+f.group+"2", f.group+"2")
		}, []string{"build-user-login"}},
		{"store not owned by root", func(t *testing.T, f *doctorFixture) {
			chown(t, f.Paths.StoreDir, 65534, 0)
		}, []string{"store-owner"}},
		{"store group-writable as Nix makes it", func(t *testing.T, f *doctorFixture) {
			gid, _, _, _ := newAccounts().group(f.group)
			chown(t, f.Paths.StoreDir, 0, int(gid))
			chmod(t, f.Paths.StoreDir, "1775")
		}, []string{"store-writable"}},
		{"a directory above the store writable by others", func(t *testing.T, f *doctorFixture) {
			chmod(t, f.Root, "0777")
		}, []string{"store-writable"}},
		{"store unreachable", func(t *testing.T, f *doctorFixture) {
			chmod(t, f.Paths.StoreDir, "0750")
		}, []string{"store-unreachable"}},
		{"db not owned by root", func(t *testing.T, f *doctorFixture) {
			chown(t, filepath.Join(f.Paths.StateDir, "db"), 65534, 0)
		}, []string{"db-owner"}},
		{"privnix db readable by others", func(t *testing.T, f *doctorFixture) {
			if err := os.Mkdir(f.Paths.DBDir(), 0o755); err != nil {
				t.Fatal(err)
			}
		}, []string{"db-owner"}},
		{"temproots world-writable", func(t *testing.T, f *doctorFixture) {
			chmod(t, filepath.Join(f.Paths.StateDir, "temproots"), "0777")
		}, []string{"state-dir-perms"}},
		{"gcroots owned by a user", func(t *testing.T, f *doctorFixture) {
			chown(t, filepath.Join(f.Paths.StateDir, "gcroots"), 65534, 0)
		}, []string{"state-dir-perms"}},
		{"profiles are not GC roots", func(t *testing.T, f *doctorFixture) {
			os.Remove(filepath.Join(f.Paths.StateDir, "gcroots", "profiles"))
		}, []string{"gcroots-profiles"}},
		{"restricted allowed-users, open socket directory", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"allowed-users = root\n", "")
		}, []string{"socket-dir-open"}},
		{"allowed-users = *, closed socket directory", func(t *testing.T, f *doctorFixture) {
			chmod(t, f.Paths.SocketDir(), "0750")
		}, []string{"socket-dir-closed"}},
		{"admin socket open to all", func(t *testing.T, f *doctorFixture) {
			l, err := net.Listen("unixpacket", f.Paths.AdminSocket())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			chmod(t, f.Paths.AdminSocket(), "0666")
		}, []string{"admin-socket-open"}},
		{"admin socket 0600", func(t *testing.T, f *doctorFixture) {
			l, err := net.Listen("unixpacket", f.Paths.AdminSocket())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			chmod(t, f.Paths.AdminSocket(), "0600")
		}, nil},
		{"trusted-users = *", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"trusted-users = root *\n", "")
		}, []string{"trusted-users-broad"}},
		{"trusted-users with a big group", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"trusted-users = root @"+f.group+"\n", "")
			f.opts.MaxTrustedGroupSize = 1
		}, []string{"trusted-users-broad"}},
		{"trusted-users with a small group", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"trusted-users = root @"+f.group+"\n", "")
		}, nil},
		{"substituters without keys", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"trusted-public-keys =\n", "")
		}, []string{"substituter-no-keys"}},
		{"require-sigs off", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"require-sigs = false\n", "")
		}, []string{"require-sigs-off"}},
		{"sandbox off", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"sandbox = false\n", "")
		}, []string{"sandbox-off"}},
		{"sandbox relaxed", func(t *testing.T, f *doctorFixture) {
			f.conf(t, f.baseConf()+"sandbox = relaxed\n", "")
		}, []string{"sandbox-off"}},
		{"frontend not installed", func(t *testing.T, f *doctorFixture) {
			os.Remove(filepath.Join(f.libexec, "privnix-frontend"))
		}, []string{"binary-missing"}},
		{"privnixd not owned by root", func(t *testing.T, f *doctorFixture) {
			chown(t, f.opts.Privnixd, 65534, 0)
		}, []string{"binary-owner"}},
		{"a child writable by its group", func(t *testing.T, f *doctorFixture) {
			chmod(t, filepath.Join(f.libexec, "privnix-storeproc"), "0775")
		}, []string{"binary-owner"}},
		{"libexec directory writable by others", func(t *testing.T, f *doctorFixture) {
			chmod(t, f.libexec, "0777")
		}, []string{"binary-owner"}},
		{"privnix id range overlaps a user", func(t *testing.T, f *doctorFixture) {
			u, _, _ := newAccounts().user(f.group + "1")
			f.conf(t, f.baseConf(), "privnix-build-uids = "+itoa(u.UID)+"-"+itoa(u.UID+1)+"\n")
		}, []string{"uid-range-overlap"}},
	} {
		t.Run(strings.TrimPrefix(tc.name, ownUsers), func(t *testing.T) {
			group := shared
			if strings.HasPrefix(tc.name, ownUsers) {
				group = ""
			}
			f := newDoctorFixture(t, group)
			tc.breakIt(t, f)
			r, err := Doctor(f.Getenv, f.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(r); !slices.Equal(got, tc.want) {
				t.Fatalf("doctor found %v, want %v:\n%+v", got, tc.want, r.Findings)
			}
			for _, fd := range r.Findings {
				if fd.Message == "" || fd.Fix == "" || (fd.Severity != Error && fd.Severity != Warning) {
					t.Errorf("finding without message, fix or severity: %+v", fd)
				}
			}
			wantCode := 0
			for _, id := range tc.want {
				for _, c := range Checks() {
					if c.ID == id {
						wantCode = max(wantCode, map[Severity]int{Warning: 1, Error: 2}[c.Severity])
					}
				}
			}
			if r.ExitCode() != wantCode {
				t.Errorf("exit code %d, want %d", r.ExitCode(), wantCode)
			}
		})
	}
}

// Every check has a case above that triggers it.
func TestDoctorEveryCheckTested(t *testing.T) {
	src, err := os.ReadFile("doctor_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Checks() {
		if !strings.Contains(string(src), `[]string{"`+c.ID+`"}`) {
			t.Errorf("check %s has no test case that breaks the set-up for it", c.ID)
		}
	}
}

// Settings that do not load are an error, not a report.
func TestDoctorBadSettings(t *testing.T) {
	s := newTestStore(t, "max-jobs = many\n", "")
	if _, err := Doctor(s.Getenv, DoctorOptions{}); err == nil || !strings.Contains(err.Error(), "max-jobs") {
		t.Fatalf("Doctor with a bad max-jobs: %v", err)
	}
}

func chown(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path, mode string) {
	t.Helper()
	if out, err := exec.Command("chmod", mode, path).CombinedOutput(); err != nil {
		t.Fatalf("chmod %s %s: %v\n%s", mode, path, err, out)
	}
}

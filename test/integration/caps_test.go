package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"privnix/internal/testenv"
)

// unitCaps reads CapabilityBoundingSet from the shipped service unit, as
// setpriv's list ("setuid,sys_admin,...").
func unitCaps(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RepoRoot(t), "systemd", "privnix-daemon.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var caps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapabilityBoundingSet="); ok {
			for _, c := range strings.Fields(v) {
				caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
	}
	if len(caps) == 0 {
		t.Fatal("no CapabilityBoundingSet in privnix-daemon.service")
	}
	return caps
}

// Under the unit's capability bounding set, privnixd finds the runtime GC
// roots of other users' processes (reading /proc/PID/fd/N, cwd and exe links
// of another uid's process needs CAP_SYS_PTRACE), so a collection does not
// delete a file a running program holds open, as nix-daemon (unconfined root)
// does not. Without CAP_SYS_PTRACE it would: the second half shows the
// difference.
func TestUnitCapsFindOtherUsersRuntimeRoots(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	caps := unitCaps(t)
	var noPtrace []string
	for _, c := range caps {
		if c != "sys_ptrace" {
			noPtrace = append(noPtrace, c)
		}
	}
	for _, tc := range []struct {
		name  string
		caps  []string
		found bool
	}{{"unit", caps, true}, {"unit without sys_ptrace", noPtrace, false}} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			s := testenv.NewStore(t, skeletonConf)
			bset := "-all,+" + strings.Join(tc.caps, ",+")
			testenv.StartPrivnixdUnder(t, s, []string{"setpriv", "--bounding-set", bset, "--inh-caps", "-all"})
			text := filepath.Join(s.Root, "in.txt")
			os.WriteFile(text, []byte("in use by a running program\n"), 0o644)
			r := s.Run(t, testenv.Alice, nil, "nix-store", "--add", text)
			if r.Err != nil {
				t.Fatalf("nix-store --add: %v\n%s", r.Err, r.Stderr)
			}
			p := strings.TrimSpace(r.Stdout)
			// alice's program holds the path open (fd 3), and names it
			// nowhere else (not in its environment, maps, exe or cwd).
			aliceUID, _ := userLookup(testenv.Alice)
			prog := exec.Command("/bin/sh", "-c", `exec 3<"$0"; exec /bin/sleep 300`, p)
			prog.Env = []string{}
			prog.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(aliceUID), Gid: uint32(lookupGID(t, testenv.Alice))}}
			if err := prog.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { prog.Process.Kill(); prog.Wait() }()
			fd3 := fmt.Sprintf("/proc/%d/fd/3", prog.Process.Pid)
			if !waitUntil(func() bool { l, _ := os.Readlink(fd3); return l == p }) {
				t.Fatalf("alice's program never opened %s", p)
			}
			r = s.Run(t, testenv.Bob, nil, "nix-store", "--gc", "--print-roots")
			if r.Err != nil {
				t.Fatalf("nix-store --gc --print-roots as bob: %v\n%s", r.Err, r.Stderr)
			}
			if found := strings.Contains(r.Stdout, "/fd/3 -> "+p); found != tc.found {
				t.Errorf("alice's program's root found = %v, want %v:\n%s", found, tc.found, r.Stdout)
			}
			r = s.Run(t, testenv.Bob, nil, "nix-store", "--delete", p)
			if _, err := os.Lstat(p); (err == nil) != tc.found {
				t.Errorf("after nix-store --delete (%v, %s), %s exists = %v, want %v", r.Err, strings.TrimSpace(r.Stderr), p, err == nil, tc.found)
			}
		})
	}
}

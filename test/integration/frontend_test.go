package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"privnix/frontend/wire"
	"privnix/internal/nixclient"
	"privnix/internal/testenv"
)

// procStatus reads the fields of /proc/PID/status; a process that has
// exited meanwhile gives an empty map.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if os.IsNotExist(err) {
		return map[string]string{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// children lists the pids whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut after ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// A frontend serving a client runs as a uid of its own, holds no
// capability, cannot gain any, and is under seccomp.
func TestLiveFrontendIsConfined(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, skeletonConf)
	d := testenv.StartPrivnixd(t, s)
	hold := holdConnection(t, testenv.Alice, s.SocketPath)
	defer hold.Close()
	alice := lookupUID(t, testenv.Alice)

	var bound []map[string]string
	for _, pid := range children(t, d.Cmd.Process.Pid) {
		st := procStatus(t, pid)
		if st["NoNewPrivs"] == "1" { // pooled frontends are not yet bound, nor confined
			bound = append(bound, st)
		}
	}
	if len(bound) != 1 {
		t.Fatalf("found %d confined frontends for one connection, want 1", len(bound))
	}
	st := bound[0]
	for _, k := range []string{"Uid", "Gid"} {
		for _, id := range strings.Fields(st[k]) {
			if id == "0" || id == strconv.Itoa(alice) {
				t.Errorf("%s = %q: a frontend must run as neither root nor the client", k, st[k])
			}
		}
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"} {
		if st[k] != "0000000000000000" {
			t.Errorf("%s = %s, want none", k, st[k])
		}
	}
	if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
		t.Errorf("NoNewPrivs = %s, Seccomp = %s; want 1 and 2 (filter)", st["NoNewPrivs"], st["Seccomp"])
	}
	if st["Groups"] != "" {
		t.Errorf("Groups = %q, want none", st["Groups"])
	}
}

func lookupUID(t *testing.T, name string) int {
	t.Helper()
	u, err := userLookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// 200 clients connecting at once are all served: Nix's client retries
// nothing, so a refused or dropped connection is a failed command.
func TestManyClientsAtOnce(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, skeletonConf)
	s.SetPrivnixConf(t, "privnix-max-connections-per-user = 256\n")
	testenv.StartPrivnixd(t, s)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := nixclient.Dial(s.SocketPath, wire.V(34))
			if err == nil {
				err = c.SetOptions()
				c.Close()
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 5 {
			t.Errorf("client: %v", err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent clients failed", failed, n)
	}
}

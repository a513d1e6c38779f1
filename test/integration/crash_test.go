package integration

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"privnix/frontend/wire"
	"privnix/internal/nixclient"
	"privnix/internal/testenv"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// crashAdd is one add a client attempted during a crash round.
type crashAdd struct {
	op   string // "add" (AddToStore, NAR), "text" (AddTextToStore), "import" (AddToStoreNar)
	path string // where it goes (computed beforehand)
	nar  []byte // the path's NAR (for "text", of the text)
	text string
	info *wire.ValidPathInfo // when the client saw success: the daemon's answer (the path only, for text and import)
	err  error
}

// Crash consistency: rounds of concurrent adds during which privnixd's monitor
// — or one of its frontends or store workers — is killed with SIGKILL at a
// random moment; privnixd is then restarted on the same store. After every
// restart: every add a client saw succeed is valid and intact (registered
// narHash = the hash of the path's dump = the NAR sent), every path of ours
// that is valid is intact, every entry of the store directory is valid, the
// staging directory is empty, and no process of the killed monitor is left.
func TestCrashConsistency(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PRIVNIX_CRASH_SEED"); v != "" { // to replay a run
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (PRIVNIX_CRASH_SEED replays the choices, not the timing)", seed)
	rng := mrand.New(mrand.NewPCG(seed, 0x9e3779b97f4a7c15))

	const (
		rounds  = 10
		clients = 24
		perConn = 4 // adds per connection, one after the other
	)
	budget := time.Now().Add(55 * time.Second)
	var all []*crashAdd
	// Without a crash every add succeeds: the failures below are the crash's.
	t.Run("no-kill", func(t *testing.T) {
		adds := crashRound(t, s, rng, -1, "none", clients, perConn)
		all = append(all, adds...)
		for _, a := range adds {
			if a.err != nil {
				t.Errorf("adding %s with no crash: %v", a.path, a.err)
			}
		}
	})
	victims := []string{"monitor", "frontend", "storeproc"}
	for round := 0; round < rounds; round++ {
		if time.Now().After(budget) {
			t.Logf("stopping after %d rounds: time budget spent", round)
			break
		}
		victim := victims[round%len(victims)]
		ok := t.Run(fmt.Sprintf("round-%d-kill-%s", round, victim), func(t *testing.T) {
			all = append(all, crashRound(t, s, rng, round, victim, clients, perConn)...)
			if t.Failed() {
				return
			}
			t.Run("recovery", func(t *testing.T) {
				d := testenv.StartPrivnixd(t, s) // on the crashed store
				crashCheck(t, s, all, round)
				d.Stop(t)
			})
		})
		if !ok {
			return
		}
	}
}

// crashRound starts privnixd, runs the adds, kills the victim with SIGKILL
// at a random moment, waits for the clients and stops (or reaps) privnixd.
func crashRound(t *testing.T, s *testenv.Store, rng *mrand.Rand, round int, victim string, clients, perConn int) []*crashAdd {
	t.Helper()
	d := testenv.StartPrivnixd(t, s)
	adds := make([][]*crashAdd, clients)
	for i := range adds {
		for j := range perConn {
			name := fmt.Sprintf("crash-%d-%d-%d", round, i, j)
			var nar []byte
			if rng.IntN(2) == 0 {
				nar = narOfRandomFile(t, 1+rng.IntN(64<<10))
			} else {
				nar = newNarTokens().tok("(", "type", "directory",
					"entry", "(", "name", "bin", "node", "(", "type", "directory",
					"entry", "(", "name", "run", "node", "(", "type", "regular", "executable", "", "contents", name+"\n", ")", ")",
					")", ")",
					"entry", "(", "name", "data", "node").file(string(narOfRandomFile(t, rng.IntN(16<<10)))).tok(")",
					"entry", "(", "name", "link", "node").symlink("bin/run").tok(")", ")").Bytes()
			}
			a := &crashAdd{op: []string{"add", "text", "import"}[j%3], path: caNarPath(t, s, name, nar), nar: nar}
			switch a.op {
			case "text": // op 8: a .drv-like text, content-addressed as text
				a.text = fmt.Sprintf("Derive([(%q,\"%d\",\"\",\"\")])%x", name, round, rng.Uint64())
				a.nar = narOfFile(a.text)
				a.path = textPath(t, s, name, a.text)
			case "import": // op 39 as root: trusted, dontCheckSigs, true narHash and narSize
				const nix32 = "0123456789abcdfghijklmnpqrsvwxyz"
				h := make([]byte, 32)
				for k := range h {
					h[k] = nix32[rng.IntN(len(nix32))]
				}
				a.path = s.StoreDir + "/" + string(h) + "-" + name
			}
			adds[i] = append(adds[i], a)
		}
	}

	var ended atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *nixclient.Client
			conn, err := net.DialTimeout("unix", s.SocketPath, 10*time.Second)
			if err == nil {
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
				if c, err = nixclient.NewClient(conn, wire.V(34)); err == nil {
					err = c.SetOptions()
				}
			}
			for _, a := range adds[i] {
				if err != nil {
					a.err = err
					continue
				}
				name := a.path[len(s.StoreDir)+1+32+1:]
				switch a.op {
				case "add":
					a.info, a.err = c.AddToStore(name, "fixed:r:sha256", nil, false, bytes.NewReader(a.nar))
				case "text":
					var p string
					if p, a.err = c.AddTextToStore(name, a.text, nil); a.err == nil {
						a.info = &wire.ValidPathInfo{Path: p}
					}
				case "import":
					a.err = c.AddToStoreNar(wire.ValidPathInfo{Path: a.path, UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{
						NarHash: hexSHA256(a.nar), NarSize: uint64(len(a.nar))}}, false, true, bytes.NewReader(a.nar))
					if a.err == nil {
						a.info = &wire.ValidPathInfo{Path: a.path}
					}
				}
				ended.Add(1)
				var re *nixclient.RemoteError
				if a.err != nil && !errors.As(a.err, &re) {
					err = a.err // the connection is gone
				}
			}
		}()
	}

	// Kill once a random number of adds have ended (so that some succeeded
	// before the crash), after a random delay.
	wantEnded := int64(rng.IntN(clients * perConn / 2))
	time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
	waitFor(5*time.Second, func() bool { return ended.Load() >= wantEnded })
	monitor := d.Cmd.Process.Pid
	before := procDescendants(monitor)
	target, what := monitor, "monitor"
	if victim == "none" {
		target, what = 0, "none"
	}
	for try := 0; victim != "monitor" && victim != "none"; try++ {
		var pick []procInfo
		switch victim {
		case "frontend":
			pick = daemonProcsInRange(d, defaultFrontendUIDLo, defaultFrontendUIDHi)
		case "storeproc": // short-lived: wait for one
			waitFor(2*time.Second, func() bool { pick = liveStoreWorkers(d); return len(pick) > 0 })
		}
		if len(pick) == 0 || try == 20 {
			break // none to kill: the monitor it is
		}
		p := pick[rng.IntN(len(pick))]
		if err := syscall.Kill(p.pid, syscall.SIGKILL); err == syscall.ESRCH {
			continue // it ended meanwhile
		} else if err != nil {
			t.Fatalf("round %d: killing the %s %v: %v", round, victim, p, err)
		}
		target, what = p.pid, victim+" "+p.String()
		break
	}
	if target == monitor {
		if err := syscall.Kill(monitor, syscall.SIGKILL); err != nil {
			t.Fatalf("round %d: killing the monitor: %v", round, err)
		}
	}

	// The clients end by themselves (their connection breaks or they
	// finish); those that hang on a frontend the crash left behind are
	// cut off after a while, which counts as a failed add.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Errorf("round %d: clients still waiting 15 s after the %s was killed", round, what)
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		<-done
	}
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	if target == monitor {
		<-d.Exited()
		requireNoOrphans(t, before, round)
	} else {
		// The monitor lived through it: with every client gone, it has
		// ended the uploads' workers and removed their staging directories.
		requireNoStoreWorkers(t, d, 3*time.Second)
		requireStagingEmpty(t, s, 3*time.Second)
	}
	d.Stop(t)
	var logged []string
	for _, l := range strings.Split(d.Log.String(), "\n") {
		if strings.Contains(l, "level=ERROR") && len(logged) < 3 {
			logged = append(logged, l)
		}
	}
	if len(logged) > 0 {
		t.Logf("round %d: the daemon logged errors, first ones:\n%s", round, strings.Join(logged, "\n"))
	}

	var out []*crashAdd
	ok := 0
	errs := map[string]int{}
	for _, as := range adds {
		for _, a := range as {
			if a.err == nil {
				ok++
			} else {
				errs[a.err.Error()]++
			}
			out = append(out, a)
		}
	}
	t.Logf("round %d: killed the %s; %d of %d adds succeeded; errors: %v", round, what, ok, len(out), errs)
	return out
}

// requireNoOrphans: none of before (the processes of a monitor killed with
// SIGKILL) is still there 3 s later.
func requireNoOrphans(t *testing.T, before []procInfo, round int) {
	t.Helper()
	var left []procInfo
	orphans := func() bool {
		now := procTable()
		left = left[:0]
		for _, p := range before {
			if q, ok := now[p.pid]; ok && q.start == p.start {
				left = append(left, q)
			}
		}
		return len(left) == 0
	}
	if !waitFor(3*time.Second, orphans) {
		t.Errorf("round %d: processes of the killed monitor still there 3 s later: %v", round, left)
	}
}

// crashCheck runs against the restarted daemon.
func crashCheck(t *testing.T, s *testenv.Store, all []*crashAdd, round int) {
	t.Helper()
	requireStagingEmpty(t, s, 2*time.Second)
	c := dialRoot(t, s)
	c.SetDeadline(time.Now().Add(time.Minute))
	ours := map[string]*crashAdd{}
	for _, a := range all {
		ours[a.path[len(s.StoreDir)+1:]] = a
		if a.err != nil {
			continue
		}
		if a.info.Path != a.path {
			t.Errorf("round %d: the add of %s answered %s", round, a.path, a.info.Path)
		}
		requirePathIntact(t, c, a.path, a.nar)
	}
	var unregistered []string
	for _, name := range storeDirEntries(t, s) {
		p := s.StoreDir + "/" + name
		valid, err := c.IsValidPath(p)
		if err != nil {
			t.Fatalf("IsValidPath %s: %v", p, err)
		}
		if !valid {
			unregistered = append(unregistered, name)
			continue
		}
		if a := ours[name]; a != nil && a.err != nil {
			requirePathIntact(t, c, p, a.nar) // the add went through, its answer did not
		}
	}
	if len(unregistered) > 0 {
		slices.Sort(unregistered)
		t.Errorf("round %d: after the restart the store holds unregistered entries: %v", round, unregistered)
	}
}

// textPath is where AddTextToStore puts text under name (no references).
func textPath(t testing.TB, s *testenv.Store, name, text string) string {
	t.Helper()
	d, err := storepath.NewDir(s.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	ca := storepath.ContentAddress{Method: storepath.Text, Hash: nixhash.Sum(nixhash.SHA256, []byte(text))}
	p, err := d.MakeFromCA(name, ca, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return d.String(p)
}

// A privnixd killed with SIGKILL while it starts (opening the database,
// removing what a crash left pending, starting its first children) starts
// again on the same store: 10 kills at random moments of start-up, each
// followed by a normal start that must serve with every path registered before
// intact (crashCheck) and leave no process of the killed one. Badger used to
// refuse its own state directory after such a kill (an empty .vlog, see
// storedb.removeEmptyLogs).
func TestCrashDuringStart(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	all := crashRound(t, s, rng, -1, "none", 4, 3) // paths to keep
	for _, a := range all {
		if a.err != nil {
			t.Fatalf("adding %s with no crash: %v", a.path, a.err)
		}
	}
	// How long a start takes here, to spread the kills over it.
	began := time.Now()
	d := testenv.StartPrivnixd(t, s)
	startup := time.Since(began)
	d.Stop(t)
	bin := testenv.Bin(t)
	for round := range 10 {
		cmd := exec.Command(filepath.Join(bin, "privnixd"), "--bin-dir", bin)
		cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, s.Env()...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(startup) * 5 / 4)))
		before := procDescendants(cmd.Process.Pid)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("round %d: killing privnixd: %v", round, err)
		}
		var exit *exec.ExitError
		if err := cmd.Wait(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: privnixd ended with %v before the kill", round, err)
		}
		requireNoOrphans(t, before, round)
		d := testenv.StartPrivnixd(t, s) // fails the test if privnixd does not come up
		crashCheck(t, s, all, round)
		d.Stop(t)
		if t.Failed() {
			return
		}
	}
}

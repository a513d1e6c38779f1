package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"privnix/frontend/wire"
	"privnix/internal/testenv"
)

// gcInputs writes the files and expressions the GC scenario adds.
func gcInputs(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"a.txt": "file a\n", "b.txt": "file b, a little longer\n", "c.txt": "file c\n",
		"d.txt": "file d\n", "e.txt": "file e\n", "src1.txt": "source one\n", "src2.txt": "source two\n",
		// drv2 refers to drv1, which refers to src1: a chain of references.
		"chain.nix": `let drv1 = derivation { name = "gc-one"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo 1 > $out" ]; src = ./src1.txt; };
in derivation { name = "gc-two"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo 2 > $out" ]; dep = drv1; }
`,
		"lone.nix": `derivation { name = "gc-lone"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; src = ./src2.txt; }
`,
	}
	files["tree/x"] = "a file in a tree\n"
	files["tree/sub/y"] = "another, deeper\n"
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("sub/y", filepath.Join(dir, "tree", "link"))
}

// sortedLines sorts the lines of s (a client's output whose order the
// daemon does not fix).
func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// errorLine returns the "error: …" line of a client's stderr.
func errorLine(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "error:") {
			return strings.TrimSpace(stripANSI(l))
		}
	}
	return ""
}

func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			for i < len(s) && s[i] != 'm' {
				i++
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// storeEntries lists the store directory's store paths (names of the form
// <hash>-<name>; daemon-private entries such as .links and .privnix-staging
// left out).
func storeEntries(t *testing.T, s *testenv.Store) string {
	t.Helper()
	ents, err := os.ReadDir(s.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") && !strings.HasSuffix(e.Name(), ".lock") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return strings.Join(names, "\n")
}

// gcScenario adds paths, makes roots of several kinds and runs every GC
// command of the 2.8 client against whichever daemon serves s. It returns
// the outputs by step, and the stderr of some steps (for the log).
func gcScenario(t *testing.T, s *testenv.Store, in string) (map[string]string, map[string]string) {
	t.Helper()
	out, stderr := map[string]string{}, map[string]string{}
	run := func(step, user string, args ...string) string {
		t.Helper()
		r := s.Run(t, user, nil, args[0], args[1:]...)
		if r.Err != nil {
			t.Fatalf("%s: %s %v: %v\nstderr: %s", step, args[0], args[1:], r.Err, r.Stderr)
		}
		out[step] = strings.TrimSpace(r.Stdout)
		stderr[step] = r.Stderr
		return out[step]
	}
	a, b := testenv.Alice, testenv.Bob
	pa := run("add a", a, "nix-store", "--add", filepath.Join(in, "a.txt"))
	pb := run("add b", a, "nix-store", "--add", filepath.Join(in, "b.txt"))
	pc := run("add c", a, "nix-store", "--add", filepath.Join(in, "c.txt"))
	pd := run("add d", b, "nix-store", "--add", filepath.Join(in, "d.txt"))
	chain := run("instantiate chain", a, "nix-instantiate", filepath.Join(in, "chain.nix"))
	run("instantiate lone", a, "nix-instantiate", filepath.Join(in, "lone.nix"))

	// Roots: a permanent root made by the admin in gcroots (to a plain path
	// and to the .drv chain), and alice's indirect root ./result → b
	// (nix-store --add-root: a symlink and AddIndirectRoot).
	gcroots := filepath.Join(s.StateDir, "gcroots")
	if err := os.MkdirAll(gcroots, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"keep-a": pa, "keep-chain": chain} {
		if err := os.Symlink(target, filepath.Join(gcroots, name)); err != nil {
			t.Fatal(err)
		}
	}
	_, home := testenvHome(s, a)
	result := filepath.Join(home, "result")
	run("add-root", a, "nix-store", "--add-root", result, "-r", pb)
	out["add-root"] = strings.ReplaceAll(out["add-root"], home, "~")

	out["roots alice"] = sortedLines(run("roots alice", a, "nix-store", "--gc", "--print-roots"))
	out["roots bob"] = sortedLines(run("roots bob", b, "nix-store", "--gc", "--print-roots"))
	out["live"] = sortedLines(run("live", a, "nix-store", "--gc", "--print-live"))
	out["dead"] = sortedLines(run("dead", a, "nix-store", "--gc", "--print-dead"))

	r := s.Run(t, a, nil, "nix-store", "--delete", pa)
	out["delete live"] = fmt.Sprintf("failed=%v %s", r.Err != nil, errorLine(r.Stderr))
	stderr["delete live"] = r.Stderr
	r = s.Run(t, a, nil, "nix-store", "--delete", pb)
	out["delete indirect"] = fmt.Sprintf("failed=%v %s", r.Err != nil, errorLine(r.Stderr))
	run("delete dead", a, "nix-store", "--delete", pc)
	// The bytes freed, as the daemon answers them (the client prints MiB).
	ptree := run("add tree", a, "nix-store", "--add", filepath.Join(in, "tree"))
	waitDead(t, s, ptree)
	raw := dialRaw(t, s.SocketPath)
	ps, freed, err := raw.collectBytes(3, []string{pd, ptree}, ^uint64(0))
	raw.close()
	out["delete dead bytes"] = fmt.Sprint(ps, freed, err)
	out["after delete"] = storeEntries(t, s)

	// --max-freed 1 stops after the first deletion; which dead path goes
	// first is the daemon's choice (nix-daemon shuffles), so only the
	// summary line is compared.
	run("max-freed", a, "nix-store", "--gc", "--max-freed", "1")
	out["dead after max-freed"] = fmt.Sprint(len(strings.Fields(run("dead after max-freed", a, "nix-store", "--gc", "--print-dead"))))
	run("gc", b, "nix-store", "--gc")
	out["after gc"] = storeEntries(t, s)
	out["live after gc"] = sortedLines(run("live after gc", a, "nix-store", "--gc", "--print-live"))

	// Alice's link goes: the auto link is stale, removed by the next
	// collection, and b is garbage.
	if err := os.Remove(result); err != nil {
		t.Fatal(err)
	}
	run("gc stale", a, "nix-store", "--gc")
	out["roots after stale"] = sortedLines(run("roots after stale", b, "nix-store", "--gc", "--print-roots"))
	auto, _ := filepath.Glob(filepath.Join(gcroots, "auto", "*"))
	out["auto links"] = fmt.Sprint(len(auto))

	pe := run("add e", a, "nix-store", "--add", filepath.Join(in, "e.txt"))
	waitDead(t, s, pe)
	run("collect-garbage", a, "nix-collect-garbage")
	out["final"] = storeEntries(t, s)
	out["final live"] = sortedLines(run("final live", b, "nix-store", "--gc", "--print-live"))
	out["final dead"] = run("final dead", b, "nix-store", "--gc", "--print-dead")
	return out, stderr
}

// waitDead waits until p is dead: a connection's temporary roots go when
// the daemon has seen it end, a moment after the client closed it (for
// nix-daemon, when the connection's process has exited).
func waitDead(t *testing.T, s *testenv.Store, p string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		r := s.Run(t, testenv.Bob, nil, "nix-store", "--gc", "--print-dead")
		if r.Err == nil && slices.Contains(strings.Fields(r.Stdout), p) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s is still alive long after its connection ended", p)
}

// testenvHome is the HOME testenv.Store.Run gives a user.
func testenvHome(s *testenv.Store, user string) (string, string) {
	return user, filepath.Join(s.Root, "home", user)
}

// The GC commands of the 2.8 client give the same answers through privnixd
// as through nix-daemon on the same store contents: roots (permanent,
// indirect; as trusted and untrusted user), live and dead sets, --delete of a
// live path refused with Nix's text and of a dead one done, --max-freed,
// --gc, stale indirect roots removed, nix-collect-garbage; and the same
// store paths are left on disk after each step.
//
// The bytes freed are nix-daemon's count (the st_size of every file and
// symlink deleted), compared through a raw client. Which path
// --max-freed 1 deletes first differs (nix-daemon walks the store in a
// shuffled order), so that step compares how many paths are left.
func TestGCMatchesNixDaemon(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	gcInputs(t, in)

	nd := testenv.StartNixDaemon(t, s)
	want, wantErr := gcScenario(t, s, in)
	nd.Stop(t)
	s.Reset(t)

	d := testenv.StartPrivnixd(t, s)
	got, gotErr := gcScenario(t, s, in)
	steps := make([]string, 0, len(want))
	for step := range want {
		steps = append(steps, step)
	}
	slices.Sort(steps)
	for _, step := range steps {
		if got[step] != want[step] {
			t.Errorf("%s: privnixd gave\n%s\nnix-daemon gave\n%s\n(stderr: privnixd %q, nix-daemon %q)", step, got[step], want[step], gotErr[step], wantErr[step])
		}
	}
	if !strings.Contains(want["delete live"], "since it is still alive") {
		t.Errorf("nix-daemon did not refuse to delete a live path: %s", want["delete live"])
	}
	if !strings.Contains(d.Log.String(), `"path deleted"`) && !strings.Contains(d.Log.String(), "path deleted") {
		t.Errorf("privnixd's log has no deletion:\n%s", d.Log.String())
	}
}

// An untrusted user sees other connections' temporary roots censored; a
// trusted one sees them as {temp:<pid>}.
func TestFindRootsCensorsTempRoots(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	gcInputs(t, in)
	testenv.StartPrivnixd(t, s)

	c := dialRaw(t, s.SocketPath)
	defer c.close()
	p, err := c.addText("held", "held by a live connection\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Run(t, testenv.Alice, nil, "nix-store", "--gc", "--print-roots")
	if r.Err != nil || !strings.Contains(r.Stdout, "{censored} -> "+p) || strings.Contains(r.Stdout, "{temp:") {
		t.Errorf("untrusted --print-roots: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	r = s.Run(t, testenv.Bob, nil, "nix-store", "--gc", "--print-roots")
	if r.Err != nil || !strings.Contains(r.Stdout, fmt.Sprintf("{temp:%d} -> %s", os.Getpid(), p)) {
		t.Errorf("trusted --print-roots: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	r = s.Run(t, testenv.Alice, nil, "nix-store", "--delete", p)
	if r.Err == nil || !strings.Contains(r.Stderr, "Cannot delete path '"+p+"' since it is still alive") {
		t.Errorf("deleting a temp root: %v %s", r.Err, r.Stderr)
	}
	r = s.Run(t, testenv.Alice, nil, "nix-store", "--gc")
	if _, err := os.Lstat(p); err != nil || r.Err != nil {
		t.Errorf("after --gc, the held path: %v (gc: %v %s)", err, r.Err, r.Stderr)
	}
	c.close()
	waitDead(t, s, p)
	if r := s.Run(t, testenv.Alice, nil, "nix-store", "--gc"); r.Err != nil || !strings.Contains(r.Stdout, "1 store paths deleted") {
		t.Errorf("--gc once the connection ended: %v %q %s", r.Err, r.Stdout, r.Stderr)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("the path outlived its connection's collection: %v", err)
	}
}

// A path added by a client that is still connected survives a collection
// started right after the add, while collections loop without pause: up to
// 200 adds (fewer if the time runs out), each referring to the previous add
// (whose connection ended: dead, and maybe being deleted right then).
func TestGCRacingAdds(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	testenv.StartPrivnixd(t, s)

	var stop atomic.Bool
	var runs, deleted atomic.Int64
	var gcErr error
	var wg sync.WaitGroup
	gcc := dialRaw(t, s.SocketPath)
	defer gcc.close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			ps, err := gcc.collect(2, nil, ^uint64(0))
			if err != nil {
				gcErr = err
				return
			}
			runs.Add(1)
			deleted.Add(int64(len(ps)))
		}
	}()
	deadline := time.Now().Add(45 * time.Second)
	prev := ""
	refused, n := 0, 0
	for i := 0; i < 200 && time.Now().Before(deadline) && !t.Failed(); i++ {
		n++
		c := dialRaw(t, s.SocketPath)
		var refs []string
		if prev != "" {
			refs = []string{prev}
		}
		p, err := c.addText(fmt.Sprintf("race-%d", i), fmt.Sprintf("add %d\n%s\n", i, prev), refs)
		if err != nil {
			// The reference was collected before the add could take a root
			// on it: a true refusal. The path must not be there.
			if !strings.Contains(err.Error(), "is not valid") {
				t.Fatalf("add %d: %v", i, err)
			}
			refused++
			c.close()
			prev = ""
			continue
		}
		// A collection that starts now, and the ones that loop after it.
		start := runs.Load()
		for runs.Load() < start+2 && gcErr == nil {
			time.Sleep(time.Millisecond)
		}
		for _, q := range append(refs, p) {
			if _, err := os.Lstat(q); err != nil {
				t.Errorf("add %d: %s collected under its live connection: %v", i, q, err)
			}
			if ok, err := c.isValid(q); err != nil || !ok {
				t.Errorf("add %d: %s not valid under its live connection (%v)", i, q, err)
			}
		}
		c.close()
		prev = p
	}
	stop.Store(true)
	wg.Wait()
	if gcErr != nil {
		t.Fatal(gcErr)
	}
	if n < 50 {
		t.Errorf("only %d adds in the time allowed", n)
	}
	if deleted.Load() == 0 {
		t.Errorf("%d collections deleted nothing: no race happened", runs.Load())
	}
	t.Logf("%d adds (%d refused: reference collected first), %d collections, %d paths deleted", n, refused, runs.Load(), deleted.Load())
}

// rawClient is a minimal worker-protocol client for the ops the GC tests
// need on one connection held open (AddTextToStore, IsValidPath,
// CollectGarbage); the test runs it as root (a trusted user).
type rawClient struct {
	conn net.Conn
	r    *wire.Reader
	w    *wire.Writer
	v    wire.Version
	once sync.Once
}

func dialRaw(t *testing.T, socket string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("unix", socket, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	c := &rawClient{conn: conn, r: wire.NewReader(conn), w: wire.NewWriter(conn), v: wire.V(34)}
	if err := c.handshake(); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return c
}

func (c *rawClient) close() { c.once.Do(func() { c.conn.Close() }) }

func (c *rawClient) handshake() error {
	c.w.U64(wire.Magic1)
	if err := c.w.Flush(); err != nil {
		return err
	}
	if m, err := c.r.U64(); err != nil || m != wire.Magic2 {
		return fmt.Errorf("daemon magic %#x (%v)", m, err)
	}
	if _, err := c.r.U64(); err != nil {
		return err
	}
	c.w.U64(uint64(c.v))
	c.w.U64(0) // cpu affinity
	c.w.U64(0) // reserve space
	if err := c.w.Flush(); err != nil {
		return err
	}
	if _, err := c.r.String(256, "nix version"); err != nil {
		return err
	}
	if err := c.stderr(); err != nil {
		return err
	}
	c.w.U64(19) // SetOptions
	wire.WriteClientOptions(c.w, c.v, wire.ClientOptions{Verbosity: 3, MaxBuildJobs: 1, VerboseBuild: 3})
	if err := c.w.Flush(); err != nil {
		return err
	}
	return c.stderr()
}

func (c *rawClient) stderr() error {
	for {
		m, err := c.r.StderrMessage(c.v)
		if err != nil {
			return err
		}
		switch m.Kind {
		case wire.StderrLast:
			return nil
		case wire.StderrError:
			return fmt.Errorf("daemon: %s", m.Err.Message)
		case wire.StderrRead:
			return fmt.Errorf("the daemon asked for data")
		}
	}
}

func (c *rawClient) addText(name, text string, refs []string) (string, error) {
	c.w.U64(8) // AddTextToStore
	c.w.String(name)
	c.w.String(text)
	c.w.StringSet(refs)
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	if err := c.stderr(); err != nil {
		return "", err
	}
	return c.r.String(4096, "path")
}

func (c *rawClient) isValid(p string) (bool, error) {
	c.w.U64(1) // IsValidPath
	c.w.String(p)
	if err := c.w.Flush(); err != nil {
		return false, err
	}
	if err := c.stderr(); err != nil {
		return false, err
	}
	return c.r.Bool()
}

func (c *rawClient) collect(action uint64, paths []string, maxFreed uint64) ([]string, error) {
	ps, _, err := c.collectBytes(action, paths, maxFreed)
	return ps, err
}

func (c *rawClient) collectBytes(action uint64, paths []string, maxFreed uint64) ([]string, uint64, error) {
	c.w.U64(20) // CollectGarbage
	c.w.U64(action)
	c.w.StringSet(paths)
	c.w.U64(0)
	c.w.U64(maxFreed)
	c.w.U64(0)
	c.w.U64(0)
	c.w.U64(0)
	if err := c.w.Flush(); err != nil {
		return nil, 0, err
	}
	if err := c.stderr(); err != nil {
		return nil, 0, err
	}
	ps, err := c.r.StringSet(1<<20, 4096, "paths")
	if err != nil {
		return nil, 0, err
	}
	freed, err := c.r.U64()
	if err != nil {
		return nil, 0, err
	}
	_, err = c.r.U64()
	return ps, freed, err
}

// runtimeScenario: a process of alice's holds a store file open; the path is
// a runtime root (censored for alice, its /proc link for bob), live, and
// cannot be deleted; once the process ends it is dead.
func runtimeScenario(t *testing.T, s *testenv.Store, in string) map[string]string {
	t.Helper()
	out := map[string]string{}
	run := stepRunner(t, s, out)
	a, b := testenv.Alice, testenv.Bob
	held := run("add held", a, "nix-store", "--add", filepath.Join(in, "d.txt"))
	waitDead(t, s, run("add free", a, "nix-store", "--add", filepath.Join(in, "e.txt")))
	uid, err := userLookup(a)
	if err != nil {
		t.Fatal(err)
	}
	gid := lookupGID(t, a)
	cmd := exec.Command("/bin/sh", "-c", `exec 3<"$1"; exec sleep 600`, "sh", held)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Wait until sleep runs with the file open.
	fd3 := fmt.Sprintf("/proc/%d/fd/3", cmd.Process.Pid)
	for i := 0; i < 500; i++ {
		if target, err := os.Readlink(fd3); err == nil && target == held {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); strings.HasSuffix(exe, "sleep") {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid := fmt.Sprintf("/proc/%d/", cmd.Process.Pid)
	out["roots alice"] = sortedLines(run("roots alice", a, "nix-store", "--gc", "--print-roots"))
	out["roots bob"] = strings.ReplaceAll(sortedLines(run("roots bob", b, "nix-store", "--gc", "--print-roots")), pid, "/proc/PID/")
	out["dead"] = sortedLines(run("dead", a, "nix-store", "--gc", "--print-dead"))
	r := s.Run(t, a, nil, "nix-store", "--delete", held)
	out["delete held"] = fmt.Sprintf("failed=%v %s", r.Err != nil, errorLine(r.Stderr))
	cmd.Process.Kill()
	cmd.Wait()
	out["dead after"] = sortedLines(run("dead after", a, "nix-store", "--gc", "--print-dead"))
	run("gc", a, "nix-store", "--gc")
	return out
}

// Runtime roots (/proc) keep a path alive, through privnixd as through
// nix-daemon, and FindRoots shows them censored to untrusted users.
func TestGCRuntimeRootsMatchNixDaemon(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	gcInputs(t, in)

	againstNixDaemon(t, s, in, runtimeScenario, func(want map[string]string) {
		if !strings.Contains(want["roots alice"], "{censored} -> "+want["add held"]) {
			t.Errorf("nix-daemon showed alice no censored runtime root: %s", want["roots alice"])
		}
	})
}

// buildRootScenario: nix-build's ./result is an indirect root of the built
// output; with keep-derivations (the default) its .drv and input .drvs stay
// too; once the link is gone, everything is garbage.
func buildRootScenario(t *testing.T, s *testenv.Store, in string) map[string]string {
	t.Helper()
	out := map[string]string{}
	run := stepRunner(t, s, out)
	a, b := testenv.Alice, testenv.Bob
	_, home := testenvHome(s, a)
	run("build", a, "nix-build", filepath.Join(in, "chain.nix"))
	// The build's connection held its paths as temporary roots: wait until
	// it is gone and chain-a's output (referred to by nothing) is dead.
	for i := 0; i < 200; i++ {
		if r := s.Run(t, b, nil, "nix-store", "--gc", "--print-dead"); r.Err == nil && strings.Contains(r.Stdout, "-chain-a\n") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	out["roots alice"] = sortedLines(run("roots alice", a, "nix-store", "--gc", "--print-roots"))
	out["roots bob"] = sortedLines(run("roots bob", b, "nix-store", "--gc", "--print-roots"))
	out["live"] = sortedLines(run("live", a, "nix-store", "--gc", "--print-live"))
	out["dead"] = sortedLines(run("dead", a, "nix-store", "--gc", "--print-dead"))
	run("gc", a, "nix-store", "--gc")
	out["after gc"] = storeEntries(t, s)
	if err := os.Remove(filepath.Join(home, "result")); err != nil {
		t.Fatal(err)
	}
	run("gc without result", a, "nix-store", "--gc")
	out["final"] = storeEntries(t, s)
	out["final roots"] = run("final roots", b, "nix-store", "--gc", "--print-roots")
	return out
}

// nix-build's result link keeps its output (and, with keep-derivations, the
// derivations) alive through privnixd as through nix-daemon.
func TestGCBuildResultRoot(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	s := testenv.NewStore(t, buildConf)
	in := filepath.Join(s.Root, "in")
	os.MkdirAll(in, 0o755)
	buildExprs(t, in)

	againstNixDaemon(t, s, in, buildRootScenario, func(want map[string]string) {
		if !strings.Contains(want["roots alice"], "/result -> ") || want["dead"] == "" {
			t.Errorf("nix-daemon: roots %q, dead %q", want["roots alice"], want["dead"])
		}
	})
}

// kill -9 of the monitor in the middle of a collection of many dead paths:
// after a restart, every path the database calls valid is in the store and
// intact, every store entry is valid (no unregistered leftover), and the
// next collection removes the rest.
func TestGCKilledMidway(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	d := testenv.StartPrivnixd(t, s)
	const n, conns = 2000, 8 // issue 6: kill -9 in the middle of a GC of 2,000 paths
	texts := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := dialRaw(t, s.SocketPath)
			defer rc.close()
			for i := c; i < n; i += conns {
				text := fmt.Sprintf("gc-crash %d\n", i)
				p, err := rc.addText(fmt.Sprintf("crash-%d", i), text, nil)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				texts[p] = text
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for p := range texts {
		waitDead(t, s, p)
		break
	}
	count := func() int {
		ents, _ := os.ReadDir(s.StoreDir)
		k := 0
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				k++
			}
		}
		return k
	}
	gcDone := make(chan error, 1)
	go func() {
		rc := dialRaw(t, s.SocketPath)
		defer rc.close()
		_, err := rc.collect(2, nil, ^uint64(0))
		gcDone <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for count() > n-n/4 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
	}
	d.Cmd.Process.Kill()
	<-d.Exited()
	<-gcDone
	left := count()
	t.Logf("monitor killed with %d of %d paths left", left, n)
	d.Stop(t)
	testenv.StartPrivnixd(t, s)

	rc := dialRaw(t, s.SocketPath)
	defer rc.close()
	ents, err := os.ReadDir(s.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	valid := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(s.StoreDir, e.Name())
		if ok, err := rc.isValid(p); err != nil || !ok {
			t.Errorf("%s is in the store but not valid (%v)", e.Name(), err)
		}
	}
	for p, text := range texts {
		ok, err := rc.isValid(p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		valid++
		if got, err := os.ReadFile(p); err != nil || string(got) != text {
			t.Errorf("%s is valid but holds %q (%v)", p, got, err)
		}
	}
	if staging, _ := os.ReadDir(filepath.Join(s.StoreDir, ".privnix-staging")); len(staging) != 0 {
		t.Errorf("the staging directory holds %d entries after the restart", len(staging))
	}
	ps, err := rc.collect(2, nil, ^uint64(0))
	if err != nil || len(ps) != valid || count() != 0 {
		t.Errorf("the collection after the restart deleted %d of %d valid paths, %d left (%v)", len(ps), valid, count(), err)
	}
	if left == 0 || left == n {
		t.Logf("the kill did not land mid-collection (%d of %d left)", left, n)
	}
}

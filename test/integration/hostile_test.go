package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"privnix/frontend/wire"
	"privnix/internal/narfs"
	"privnix/internal/nixclient"
	"privnix/internal/testenv"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// hostileConf lets every user connect, trusts root and privnix-test-trusted,
// and requires signatures on imports.
const hostileConf = `
allowed-users = *
trusted-users = root @privnix-test-trusted
build-users-group = privnix-test-bld
substituters =
require-sigs = true
`

// privnix's default id ranges (nix/conf): frontends, then store workers.
const (
	defaultFrontendUIDLo  = 1879048192
	defaultFrontendUIDHi  = 1879113727
	defaultStoreprocUIDLo = 1879113728
	defaultStoreprocUIDHi = 1879179263
)

// The test binary doubles as a hostile client run as a test user: with
// PRIVNIX_TEST_HOSTILE=1 it reads one hostileRequest (JSON) from stdin, does
// it, and writes hostileReply lines. (An init, not TestMain: main_test.go
// owns TestMain.)
func init() {
	if os.Getenv("PRIVNIX_TEST_HOSTILE") == "1" {
		os.Exit(hostileChild(os.Stdin, os.Stdout))
	}
}

// hostileRequest is one hostile upload done by the child.
type hostileRequest struct {
	Socket string
	Op     string             // "import" (AddToStoreNar), "add" (AddToStore), "disconnect" (AddToStore, closed after half the NAR)
	Info   wire.ValidPathInfo // import
	Sigs   bool               // import: dontCheckSigs as sent
	Name   string             // add, disconnect
	NAR    []byte
}

// hostileReply is what the child saw: "ok", "refused" (the daemon's
// message), "error" (anything else), "half" (disconnect: half the NAR is
// sent; the child then waits for a line on stdin) and "closed".
type hostileReply struct {
	Kind, Msg string
}

func hostileChild(in io.Reader, out io.Writer) int {
	br := bufio.NewReader(in)
	enc := json.NewEncoder(out)
	say := func(kind, m string) { enc.Encode(hostileReply{kind, m}) }
	line, err := br.ReadBytes('\n')
	var req hostileRequest
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	if err != nil {
		say("error", "request: "+err.Error())
		return 1
	}
	c, err := nixclient.Dial(req.Socket, wire.V(34))
	if err == nil {
		err = c.SetOptions()
	}
	if err != nil {
		say("error", err.Error())
		return 1
	}
	defer c.Close()
	switch req.Op {
	case "import":
		err = c.AddToStoreNar(req.Info, false, req.Sigs, bytes.NewReader(req.NAR))
	case "add":
		_, err = c.AddToStore(req.Name, "fixed:r:sha256", nil, false, bytes.NewReader(req.NAR))
	case "disconnect":
		var u *nixclient.Upload
		if u, err = c.StartAddToStore(req.Name, "fixed:r:sha256", nil, false); err == nil {
			_, err = u.Write(req.NAR[:len(req.NAR)/2])
		}
		if err == nil {
			say("half", "")
			br.ReadBytes('\n')
			if err := u.Disconnect(); err != nil {
				say("error", "closing: "+err.Error())
				return 1
			}
			say("closed", "")
			return 0
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	var re *nixclient.RemoteError
	switch {
	case errors.As(err, &re):
		say("refused", re.Message)
	case err != nil:
		say("error", err.Error())
	default:
		say("ok", "")
	}
	return 0
}

// hostileAs starts the hostile child as userName with req; the returned
// function reads its next reply, and the writer is its stdin.
func hostileAs(t *testing.T, userName string, req hostileRequest) (next func() hostileReply, stdin io.WriteCloser) {
	t.Helper()
	cmd := selfAs(t, userName, "PRIVNIX_TEST_HOSTILE=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var err error
	stdin, err = cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	b, _ := json.Marshal(req)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(stdout)
	return func() hostileReply {
		t.Helper()
		var r hostileReply
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("hostile client as %s: %v; its stderr: %s", userName, err, stderr.String())
		}
		return r
	}, stdin
}

// narTokens writes NAR tokens as they are, so that it can say what a NAR
// writer would refuse to.
type narTokens struct{ bytes.Buffer }

func (n *narTokens) tok(ss ...string) *narTokens {
	for _, s := range ss {
		var l [8]byte
		binary.LittleEndian.PutUint64(l[:], uint64(len(s)))
		n.Write(l[:])
		n.WriteString(s)
		n.Write(make([]byte, (8-len(s)%8)%8))
	}
	return n
}

func (n *narTokens) file(contents string) *narTokens {
	return n.tok("(", "type", "regular", "contents", contents, ")")
}

func (n *narTokens) symlink(target string) *narTokens {
	return n.tok("(", "type", "symlink", "target", target, ")")
}

func newNarTokens() *narTokens { n := &narTokens{}; n.tok("nix-archive-1"); return n }

// narOfFile is the NAR of one regular file.
func narOfFile(contents string) []byte { return newNarTokens().file(contents).Bytes() }

// narOfRandomFile is the NAR of a file of n random bytes.
func narOfRandomFile(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return narOfFile(string(b))
}

func hexSHA256(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// caNarPath is where AddToStore "fixed:r:sha256" puts nar under name.
func caNarPath(t testing.TB, s *testenv.Store, name string, nar []byte) string {
	t.Helper()
	d, err := storepath.NewDir(s.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	ca := storepath.ContentAddress{Method: storepath.Recursive, Hash: nixhash.Sum(nixhash.SHA256, nar)}
	p, err := d.MakeFromCA(name, ca, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return d.String(p)
}

// dialRoot connects as root (a trusted user) and sends SetOptions.
func dialRoot(t testing.TB, s *testenv.Store) *nixclient.Client {
	t.Helper()
	c, err := nixclient.Dial(s.SocketPath, wire.V(34))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetOptions(); err != nil {
		t.Fatal(err)
	}
	return c
}

func stagingDirOf(s *testenv.Store) string { return filepath.Join(s.StoreDir, ".privnix-staging") }

// storeDirEntries lists the store directory without dot-files (the staging
// directory is one).
func storeDirEntries(t testing.TB, s *testenv.Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// waitFor polls cond for up to d; it returns cond's last answer.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// requireStagingEmpty fails unless the staging directory exists and is
// empty (within a few seconds: a disconnected upload is cleaned up when the
// daemon notices).
func requireStagingEmpty(t testing.TB, s *testenv.Store, wait time.Duration) {
	t.Helper()
	var left []string
	var err error
	ok := waitFor(wait, func() bool {
		var ents []os.DirEntry
		ents, err = os.ReadDir(stagingDirOf(s))
		left = left[:0]
		for _, e := range ents {
			left = append(left, e.Name())
		}
		return err == nil && len(left) == 0
	})
	if !ok {
		t.Errorf("staging directory %s: %v, left behind: %v", stagingDirOf(s), err, left)
	}
}

// procInfo is a process seen in /proc.
type procInfo struct {
	pid, ppid int
	uid       int // real uid
	state     string
	comm      string
	start     string // start time in clock ticks (field 22), against pid reuse
}

func (p procInfo) String() string {
	return fmt.Sprintf("pid %d (%s) uid %d state %s", p.pid, p.comm, p.uid, p.state)
}

func procTable() map[int]procInfo {
	ents, _ := os.ReadDir("/proc")
	out := map[int]procInfo{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(st)
		i := strings.LastIndexByte(s, ')')
		j := strings.IndexByte(s, '(')
		if i < 0 || j < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 20 {
			continue
		}
		p := procInfo{pid: pid, comm: s[j+1 : i], state: f[0], start: f[19], uid: -1}
		p.ppid, _ = strconv.Atoi(f[1])
		if status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status")); err == nil {
			for _, l := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(l, "Uid:"); ok {
					if fs := strings.Fields(v); len(fs) > 0 {
						p.uid, _ = strconv.Atoi(fs[0])
					}
				}
			}
		}
		out[pid] = p
	}
	return out
}

// procDescendants lists the processes beneath root (not root itself), zombies
// included.
func procDescendants(root int) []procInfo {
	all := procTable()
	kids := map[int][]int{}
	for pid, p := range all {
		kids[p.ppid] = append(kids[p.ppid], pid)
	}
	var out []procInfo
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, k := range kids[pid] {
			out = append(out, all[k])
			queue = append(queue, k)
		}
	}
	return out
}

// daemonProcsInRange lists the daemon's processes whose uid is in [lo, hi]. Only the
// daemon's procDescendants count: other tests (storeproc's, other daemons) use
// uids from the same range at the same time.
func daemonProcsInRange(d *testenv.Daemon, lo, hi int) []procInfo {
	var out []procInfo
	for _, p := range procDescendants(d.Cmd.Process.Pid) {
		if p.uid >= lo && p.uid <= hi {
			out = append(out, p)
		}
	}
	return out
}

// requireNoStoreWorkers fails unless, within wait, no process of the daemon has
// a store-worker uid, not even a zombie.
func requireNoStoreWorkers(t testing.TB, d *testenv.Daemon, wait time.Duration) {
	t.Helper()
	var left []procInfo
	if !waitFor(wait, func() bool {
		left = daemonProcsInRange(d, defaultStoreprocUIDLo, defaultStoreprocUIDHi)
		return len(left) == 0
	}) {
		t.Errorf("store workers left after %v: %v", wait, left)
	}
}

// requireDaemonHealthy makes a fresh connection and adds a fresh path through it.
func requireDaemonHealthy(t testing.TB, s *testenv.Store) {
	t.Helper()
	c, err := nixclient.Dial(s.SocketPath, wire.V(34))
	if err != nil {
		t.Fatalf("the daemon no longer accepts connections: %v", err)
	}
	defer c.Close()
	if err := c.SetOptions(); err != nil {
		t.Fatalf("the daemon is unhealthy: SetOptions: %v", err)
	}
	requireGoodAdd(t, c, s)
}

// requireGoodAdd adds a fresh random file through c and checks it is valid and
// dumps as it was sent.
func requireGoodAdd(t testing.TB, c *nixclient.Client, s *testenv.Store) string {
	t.Helper()
	nar := narOfRandomFile(t, 1000)
	info, err := c.AddToStore("hostile-healthy", "fixed:r:sha256", nil, false, bytes.NewReader(nar))
	if err != nil {
		t.Fatalf("a good add after the attack: %v", err)
	}
	if want := caNarPath(t, s, "hostile-healthy", nar); info.Path != want {
		t.Fatalf("a good add went to %s, want %s", info.Path, want)
	}
	requirePathIntact(t, c, info.Path, nar)
	return info.Path
}

// requirePathIntact checks that p is valid, registered with nar's hash and size,
// and dumps as nar.
func requirePathIntact(t testing.TB, c *nixclient.Client, p string, nar []byte) {
	t.Helper()
	info, err := c.QueryPathInfo(p)
	if err != nil || info == nil {
		t.Errorf("%s: not valid (info %v, err %v)", p, info, err)
		return
	}
	got, err := nixhash.ParseAs(info.NarHash, nixhash.SHA256)
	if err != nil {
		t.Errorf("%s: registered narHash %q: %v", p, info.NarHash, err)
		return
	}
	if want := nixhash.Sum(nixhash.SHA256, nar); !got.Equal(want) || info.NarSize != uint64(len(nar)) {
		t.Errorf("%s: registered narHash %s narSize %d, the NAR sent has %s and %d bytes", p, got.Base16(), info.NarSize, want.Base16(), len(nar))
	}
	var dump bytes.Buffer
	if err := narfs.DumpPath(&dump, p); err != nil {
		t.Errorf("dumping %s: %v", p, err)
		return
	}
	if hexSHA256(dump.Bytes()) != got.Base16() {
		t.Errorf("%s dumps as %d bytes with sha256 %s; registered %s", p, dump.Len(), hexSHA256(dump.Bytes()), got.Base16())
	}
}

// malformedNARs: every bad NAR vector (as storeproc's test classifies them)
// and a few more, with the words the refusal must contain.
func malformedNARs(t *testing.T) map[string]struct {
	nar  []byte
	want string
} {
	t.Helper()
	bad := map[string]string{
		"dot.nar":                               `NAR entry named "." or ".."`,
		"dotdot.nar":                            `NAR entry named "." or ".."`,
		"empty.nar":                             "empty NAR entry name",
		"executable-after-contents.nar":         "executable marker after the contents",
		"invalid-tag-instead-of-contents.nar":   "unexpected token",
		"name-after-node.nar":                   "unexpected token",
		"nul-character.nar":                     "NAR entry name contains NUL",
		"regular-one-byte-non-zero-padding.nar": "non-zero padding",
		"regular-truncated-padding.nar":         "unexpected end of the upload",
		"slash.nar":                             "NAR entry name contains '/'",
		"regular-truncated-large-contents.nar":  "the upload is larger than the limit", // claims 2^64-1 bytes
	}
	good := map[string]bool{"regular-one-byte-zero-padding.nar": true, "case-collision.nar": true, "case.nar": true,
		"empty-dir.nar": true, "empty-subdir.nar": true, "simple.nar": true}
	out := map[string]struct {
		nar  []byte
		want string
	}{}
	dir := filepath.Join(testenv.RepoRoot(t), "..", "shared", "vectors", "nix")
	for _, sub := range []string{"libutil-nars", "libutil-fuzz-nars"} {
		files, err := filepath.Glob(filepath.Join(dir, sub, "*.nar"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no NAR vectors in %s (%v)", filepath.Join(dir, sub), err)
		}
		for _, f := range files {
			base := filepath.Base(f)
			want, isBad := bad[base]
			if !isBad && !good[base] {
				t.Fatalf("vector %s/%s is not classified", sub, base)
			}
			if !isBad {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out[sub+"/"+base] = struct {
				nar  []byte
				want string
			}{b, want}
		}
	}
	add := func(name string, n *narTokens, want string) {
		out["crafted/"+name] = struct {
			nar  []byte
			want string
		}{n.Bytes(), want}
	}
	// A symlink and then a directory of the same name: were both restored,
	// the file would land where the symlink points.
	add("symlink-then-dir-same-name", newNarTokens().tok("(", "type", "directory",
		"entry", "(", "name", "a", "node").symlink("/etc").tok(")",
		"entry", "(", "name", "a", "node", "(", "type", "directory",
		"entry", "(", "name", "shadow", "node").file("pwned\n").tok(")", ")", ")", ")"), "duplicate NAR entry name")
	add("unsorted", newNarTokens().tok("(", "type", "directory",
		"entry", "(", "name", "b", "node").file("b").tok(")",
		"entry", "(", "name", "a", "node").file("a").tok(")", ")"), "NAR entry names are not sorted")
	add("bad-magic", (&narTokens{}).tok("nix-archive-2").file("x"), "it does not start with the NAR magic")
	add("not-a-nar", &narTokens{Buffer: *bytes.NewBufferString("GET / HTTP/1.1\r\nHost: x\r\n\r\n")}, "the NAR is malformed")
	add("empty-upload", &narTokens{}, "the NAR is malformed")
	add("trailing-bytes", newNarTokens().file("x").tok("more"), "bytes after the end of the NAR")
	add("symlink-with-empty-target", newNarTokens().symlink(""), "empty symlink target")
	add("unknown-type", newNarTokens().tok("(", "type", "fifo", ")"), "unknown file type")
	return out
}

// Every malformed NAR, sent by AddToStore as a NAR, is refused with words
// naming the problem; the store is unchanged, nothing is left staged, no
// worker remains, and the same connection and the daemon go on working.
func TestHostileMalformedNARs(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	d := testenv.StartPrivnixd(t, s)
	c := dialRoot(t, s)
	vectors := malformedNARs(t)
	names := make([]string, 0, len(vectors))
	for n := range vectors {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		v := vectors[name]
		t.Run(name, func(t *testing.T) {
			before := storeDirEntries(t, s)
			_, err := c.AddToStore("hostile", "fixed:r:sha256", nil, false, bytes.NewReader(v.nar))
			var re *nixclient.RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("malformed NAR: got %v, want a refusal saying %q", err, v.want)
			}
			if !strings.Contains(re.Message, v.want) {
				t.Errorf("refusal %q does not say %q", re.Message, v.want)
			}
			if after := storeDirEntries(t, s); !slices.Equal(before, after) {
				t.Errorf("the store changed: before %v, after %v", before, after)
			}
			if valid, err := c.IsValidPath(caNarPath(t, s, "hostile", v.nar)); err != nil || valid {
				t.Errorf("the path of these bytes: valid %v, err %v", valid, err)
			}
			requireStagingEmpty(t, s, 0)
			requireNoStoreWorkers(t, d, 2*time.Second)
			requireGoodAdd(t, c, s) // the same connection
		})
	}
	requireDaemonHealthy(t, s)
}

// A NAR whose hash or size is not what AddToStoreNar claims is refused, even
// for a trusted client that asks not to check signatures.
func TestHostileImportLies(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	d := testenv.StartPrivnixd(t, s)
	c := dialRoot(t, s)
	nar := narOfRandomFile(t, 4096)
	other := narOfRandomFile(t, 4096)
	p := s.StoreDir + "/" + "0123456789abcdfghijklmnpqrsvwxyz-hostile-import"
	info := func(hash string, size uint64) wire.ValidPathInfo {
		return wire.ValidPathInfo{Path: p, UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{NarHash: hash, NarSize: size}}
	}
	for _, tc := range []struct {
		name string
		info wire.ValidPathInfo
		want string
	}{
		{"hash of another NAR", info(hexSHA256(other), uint64(len(nar))), "hash mismatch importing path '" + p + "'"},
		{"size too large", info(hexSHA256(nar), uint64(len(nar))+8), "size mismatch importing path '" + p + "'"},
		{"size too small", info(hexSHA256(nar), uint64(len(nar))-8), fmt.Sprintf("the upload is larger than the limit of %d bytes", len(nar)-8)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.AddToStoreNar(tc.info, false, true, bytes.NewReader(nar))
			var re *nixclient.RemoteError
			if !errors.As(err, &re) || !strings.Contains(re.Message, tc.want) {
				t.Fatalf("got %v, want a refusal saying %q", err, tc.want)
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("after the refusal %s exists (%v)", p, err)
			}
			if v, err := c.IsValidPath(p); err != nil || v {
				t.Errorf("after the refusal: valid %v, err %v", v, err)
			}
			requireStagingEmpty(t, s, 0)
			requireNoStoreWorkers(t, d, 2*time.Second)
		})
	}
	// The same import, told the truth, is accepted: the refusals above were
	// for the lies.
	if err := c.AddToStoreNar(info(hexSHA256(nar), uint64(len(nar))), false, true, bytes.NewReader(nar)); err != nil {
		t.Fatalf("truthful trusted import: %v", err)
	}
	requirePathIntact(t, c, p, nar)
	requireDaemonHealthy(t, s)
}

// zeroReader reads as an endless run of zero bytes.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A NAR followed by 1 GiB of zeroReader, past the narSize it claims: the store
// worker stops at the claimed size, the import is refused, and no process of
// the daemon grows (peak RSS) past 200 MiB.
func TestHostileOversizedImport(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	d := testenv.StartPrivnixd(t, s)
	c := dialRoot(t, s)
	nar := narOfRandomFile(t, 64<<10)
	p := s.StoreDir + "/" + "0123456789abcdfghijklmnpqrsvwxyz-hostile-big"

	stop := make(chan struct{})
	peaks := make(chan map[string]int, 1)
	go func() { peaks <- samplePeakRSS(d.Cmd.Process.Pid, stop) }()

	start := time.Now()
	u, err := c.StartAddToStoreNar(wire.ValidPathInfo{Path: p, UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{
		NarHash: hexSHA256(nar), NarSize: uint64(len(nar))}}, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Send(bytes.NewReader(nar)); err != nil {
		t.Fatal(err)
	}
	const half = 512 << 20
	if err := u.Send(io.LimitReader(zeroReader{}, half)); err != nil {
		t.Fatal(err)
	}
	// Half a GiB past the claimed size, the worker has long given up.
	if live := liveStoreWorkers(d); len(live) != 0 && u.Refused() == nil {
		t.Errorf("%d MiB past the claimed size, store workers still run: %v", half>>20, live)
	}
	if err := u.Send(io.LimitReader(zeroReader{}, half)); err != nil {
		t.Fatal(err)
	}
	_, err = u.Finish()
	elapsed := time.Since(start)
	close(stop)
	peak := <-peaks
	var re *nixclient.RemoteError
	if want := fmt.Sprintf("the upload is larger than the limit of %d bytes", len(nar)); !errors.As(err, &re) || !strings.Contains(re.Message, want) {
		t.Errorf("got %v, want a refusal saying %q", err, want)
	}
	t.Logf("%d bytes sent, answer after %v; peak RSS per process: %v", u.Sent(), elapsed, peak)
	if elapsed > time.Minute {
		t.Errorf("the refusal took %v", elapsed)
	}
	for who, kib := range peak {
		if kib >= 200<<10 {
			t.Errorf("%s: VmHWM %d KiB, want < 200 MiB", who, kib)
		}
	}
	sawFrontend := false
	for who := range peak {
		var pid, uid int
		fmt.Sscanf(who, "pid %d uid %d", &pid, &uid)
		sawFrontend = sawFrontend || (uid >= defaultFrontendUIDLo && uid <= defaultFrontendUIDHi)
	}
	if _, ok := peak[fmt.Sprintf("pid %d uid 0", d.Cmd.Process.Pid)]; !ok || !sawFrontend {
		t.Errorf("sampled only %v: the daemon and its frontends should have been seen", peak)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("after the refusal %s exists (%v)", p, err)
	}
	requireStagingEmpty(t, s, 0)
	requireNoStoreWorkers(t, d, 2*time.Second)
	requireGoodAdd(t, c, s)
	requireDaemonHealthy(t, s)
}

// liveStoreWorkers lists the daemon's store workers that are not zombies.
func liveStoreWorkers(d *testenv.Daemon) []procInfo {
	var out []procInfo
	for _, p := range daemonProcsInRange(d, defaultStoreprocUIDLo, defaultStoreprocUIDHi) {
		if p.state != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// samplePeakRSS reads VmHWM (KiB) of root and its procDescendants every 10 ms
// until stop closes, and returns each one's largest, keyed "pid (comm) uid".
func samplePeakRSS(root int, stop <-chan struct{}) map[string]int {
	peak := map[string]int{}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		procs := append(procDescendants(root), procInfo{pid: root, comm: "privnixd", uid: 0})
		for _, p := range procs {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
					kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
					key := fmt.Sprintf("pid %d uid %d", p.pid, p.uid)
					peak[key] = max(peak[key], kib)
				}
			}
		}
		select {
		case <-stop:
			return peak
		case <-tick.C:
		}
	}
}

// Symlinks out of the store, to a root-owned secret or ../../.., are stored
// as symlinks (Nix allows any target) and nothing is followed: the sealed path
// is the symlink, the tree holds the symlinks, the secret is untouched. (The
// secret is the test's own 0600 root file, not /etc/shadow, which other tests
// running at the same time may change by creating users.)
func TestHostileSymlinks(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	testenv.StartPrivnixd(t, s)
	c := dialRoot(t, s)
	secret := filepath.Join(s.Root, "secret")
	if err := os.WriteFile(secret, []byte("root's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shadowBefore := fileFingerprint(t, secret)

	root := newNarTokens().symlink(secret).Bytes()
	tree := newNarTokens().tok("(", "type", "directory",
		"entry", "(", "name", "escape", "node").symlink("../../..").tok(")",
		"entry", "(", "name", "shadow", "node").symlink(secret).tok(")",
		"entry", "(", "name", "x", "node").file("x\n").tok(")", ")").Bytes()
	for _, tc := range []struct {
		name  string
		nar   []byte
		links map[string]string // relative path (. = the store path) → target
	}{
		{"root-symlink", root, map[string]string{".": secret}},
		{"tree", tree, map[string]string{"escape": "../../..", "shadow": secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := c.AddToStore("hostile-"+tc.name, "fixed:r:sha256", nil, false, bytes.NewReader(tc.nar))
			if err != nil {
				t.Fatalf("symlinks out of the store refused: %v", err)
			}
			requirePathIntact(t, c, info.Path, tc.nar)
			for rel, target := range tc.links {
				p := filepath.Join(info.Path, rel)
				fi, err := os.Lstat(p)
				if err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Errorf("%s: %v %v, want a symlink", p, fi.Mode(), err)
					continue
				}
				if got, _ := os.Readlink(p); got != target {
					t.Errorf("%s -> %q, want %q", p, got, target)
				}
				if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
					t.Errorf("%s owned by uid %d, want root", p, st.Uid)
				}
			}
		})
	}
	if after := fileFingerprint(t, secret); after != shadowBefore {
		t.Errorf("%s changed: %s → %s", secret, shadowBefore, after)
	}
	requireStagingEmpty(t, s, 0)
}

// fileFingerprint is a file's mode, owner, size, mtime and content hash.
func fileFingerprint(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("mode %v uid %d gid %d size %d mtime %v sha256 %s", fi.Mode(), st.Uid, st.Gid, fi.Size(), fi.ModTime(), hexSHA256(b))
}

// A NAR cut short (the client ends the framed data early) is refused; the
// connection goes on.
func TestHostileTruncatedUpload(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	d := testenv.StartPrivnixd(t, s)
	c := dialRoot(t, s)
	nar := narOfRandomFile(t, 100<<10)
	for _, cut := range []int{0, 8, 40, len(nar) / 2, len(nar) - 1} {
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			before := storeDirEntries(t, s)
			_, err := c.AddToStore("hostile-cut", "fixed:r:sha256", nil, false, bytes.NewReader(nar[:cut]))
			var re *nixclient.RemoteError
			if !errors.As(err, &re) || !strings.Contains(re.Message, "the NAR is malformed") {
				t.Fatalf("NAR cut at %d of %d bytes: got %v, want a refusal saying the NAR is malformed", cut, len(nar), err)
			}
			if cut > 40 && !strings.Contains(re.Message, "unexpected end of the upload") {
				t.Errorf("refusal %q does not say %q", re.Message, "unexpected end of the upload")
			}
			if after := storeDirEntries(t, s); !slices.Equal(before, after) {
				t.Errorf("the store changed: before %v, after %v", before, after)
			}
			requireStagingEmpty(t, s, 0)
			requireNoStoreWorkers(t, d, 2*time.Second)
			requireGoodAdd(t, c, s)
		})
	}
}

// A client that goes away in the middle of an upload leaves nothing: no
// staged tree, no store worker, no path; the daemon goes on. As root, and as
// an untrusted user.
func TestHostileDisconnectMidUpload(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	d := testenv.StartPrivnixd(t, s)
	nar := narOfRandomFile(t, 64<<10)
	p := caNarPath(t, s, "hostile-disconnect", nar)
	check := func(t *testing.T, before []string) {
		t.Helper()
		requireNoStoreWorkers(t, d, 3*time.Second)
		requireStagingEmpty(t, s, 3*time.Second)
		if after := storeDirEntries(t, s); !slices.Equal(before, after) {
			t.Errorf("the store changed: before %v, after %v", before, after)
		}
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists (%v)", p, err)
		}
		requireDaemonHealthy(t, s)
	}
	t.Run("root", func(t *testing.T) {
		before := storeDirEntries(t, s)
		c, err := nixclient.Dial(s.SocketPath, wire.V(34))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetOptions(); err != nil {
			t.Fatal(err)
		}
		u, err := c.StartAddToStore("hostile-disconnect", "fixed:r:sha256", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.Write(nar[:len(nar)/2]); err != nil {
			t.Fatal(err)
		}
		requireStoreWorkerRunning(t, d)
		u.Disconnect()
		check(t, before)
	})
	t.Run("untrusted", func(t *testing.T) {
		before := storeDirEntries(t, s)
		next, stdin := hostileAs(t, testenv.Alice, hostileRequest{Socket: s.SocketPath, Op: "disconnect", Name: "hostile-disconnect", NAR: nar})
		if r := next(); r.Kind != "half" {
			t.Fatalf("hostile client: %+v", r)
		}
		requireStoreWorkerRunning(t, d)
		io.WriteString(stdin, "go\n")
		if r := next(); r.Kind != "closed" {
			t.Fatalf("hostile client: %+v", r)
		}
		check(t, before)
	})
}

// requireStoreWorkerRunning waits for the upload's store worker to be there, so
// that the checks after a disconnect mean something.
func requireStoreWorkerRunning(t *testing.T, d *testenv.Daemon) {
	t.Helper()
	if !waitFor(5*time.Second, func() bool { return len(liveStoreWorkers(d)) > 0 }) {
		t.Fatal("no store worker runs for the upload in progress")
	}
}

// An untrusted client cannot skip signature checks, nor import bytes under a
// content address they do not have; a true content address needs no
// signature.
func TestHostileUntrustedImport(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	d := testenv.StartPrivnixd(t, s)
	nar := narOfRandomFile(t, 4096)
	other := narOfRandomFile(t, 4096)
	caOf := func(b []byte) string {
		return storepath.ContentAddress{Method: storepath.Recursive, Hash: nixhash.Sum(nixhash.SHA256, b)}.String()
	}
	unsigned := s.StoreDir + "/" + "0123456789abcdfghijklmnpqrsvwxyz-hostile-unsigned"
	lied := caNarPath(t, s, "hostile-ca", nar) // the path of nar's content address…
	for _, tc := range []struct {
		name, path, ca string
		nar            []byte
		want           string
	}{
		{"dontCheckSigs without trust", unsigned, "", nar, "cannot add path '" + unsigned + "' because it lacks a valid signature"},
		// …with other's bytes (and other's true NAR hash).
		{"false content address", lied, caOf(nar), other, "path '" + lied + "' claims to be content-addressed as '" + caOf(nar) + "' but is not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, _ := hostileAs(t, testenv.Alice, hostileRequest{Socket: s.SocketPath, Op: "import", Sigs: true, NAR: tc.nar,
				Info: wire.ValidPathInfo{Path: tc.path, UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{
					NarHash: hexSHA256(tc.nar), NarSize: uint64(len(tc.nar)), CA: tc.ca, Ultimate: true}}})
			r := next()
			if r.Kind != "refused" || !strings.Contains(r.Msg, tc.want) {
				t.Fatalf("got %+v, want a refusal saying %q", r, tc.want)
			}
			if _, err := os.Lstat(tc.path); !os.IsNotExist(err) {
				t.Errorf("after the refusal %s exists (%v)", tc.path, err)
			}
			requireStagingEmpty(t, s, 0)
			requireNoStoreWorkers(t, d, 2*time.Second)
		})
	}
	t.Run("true content address", func(t *testing.T) {
		next, _ := hostileAs(t, testenv.Alice, hostileRequest{Socket: s.SocketPath, Op: "import", NAR: nar,
			Info: wire.ValidPathInfo{Path: lied, UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{
				NarHash: hexSHA256(nar), NarSize: uint64(len(nar)), CA: caOf(nar), Ultimate: true}}})
		if r := next(); r.Kind != "ok" {
			t.Fatalf("untrusted import with a true content address: %+v", r)
		}
		c := dialRoot(t, s)
		requirePathIntact(t, c, lied, nar)
		if info, err := c.QueryPathInfo(lied); err == nil && info != nil && info.Ultimate {
			t.Errorf("an untrusted import is registered as ultimate")
		}
	})
	requireDaemonHealthy(t, s)
}

package ipc

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"privnix/ipc/msg"
)

const (
	testDir = "/nix/store"
	testP1  = msg.StorePath("/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-hello-2.12.1")
	testP2  = msg.StorePath("/nix/store/0i6ardx43rdg24ab1nc3mq7f5ykyiamb-glibc-2.39-52")
	testH   = "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
)

// pair returns two Conns over a fresh socketpair, closed at the end of the test.
func pair(t testing.TB) (*Conn, *Conn) {
	t.Helper()
	a, b, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := NewConn(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := NewConn(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// rawPair returns a Conn and the raw fd of its peer, for forging frames.
func rawPair(t testing.TB) (*Conn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConn(os.NewFile(uintptr(fds[0]), "conn"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); unix.Close(fds[1]) })
	return c, fds[1]
}

// openFds counts this process's open fds.
func openFds(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory being read
}

// sampleFiles returns n files (pipe ends) for kinds that take fds.
func sampleFiles(t testing.TB, n int) []*os.File {
	var fs []*os.File
	for i := 0; i < n; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		fs = append(fs, r)
	}
	return fs
}

func samples() []msg.Message {
	return []msg.Message{
		&msg.Error{Class: msg.ClassNotValid, Message: "path is not valid"},
		&msg.OK{},
		&msg.Hello{},
		&msg.HelloOK{Uid: 1000, Trusted: false, User: "alice", StoreDir: testDir, NixVersion: "2.24.0", MaxVerbosity: msg.LevelInfo},
		&msg.Session{HelloOK: msg.HelloOK{Uid: 1001, User: "bob", StoreDir: testDir, NixVersion: "2.24.0"}},
		&msg.Log{Level: msg.LevelWarn, Msg: "disk nearly full", Attrs: msg.Attrs{{Key: "free", Value: "1%"}}},
		&msg.IsValidPath{Path: testP1},
		&msg.Bool{V: true},
		&msg.QueryPathInfo{Path: testP1},
		&msg.PathInfo{Path: testP1, NarHash: testH, References: msg.StorePaths{testP2}, NarSize: 42, RegistrationTime: 1, Sigs: msg.Strings{"k-1:AAAA"}},
		&msg.QueryPaths{Op: msg.PathsByHashPart, HashPart: string(testP1[11:43])},
		&msg.Paths{Paths: msg.StorePaths{testP1, testP2}},
		&msg.AddTempRoot{Path: testP1},
		&msg.OpenGeneration{},
		&msg.QueryReferrers{Paths: msg.StorePaths{testP1}},
		&msg.Referrers{Entries: msg.ReferrersList{{Path: testP2, Referrers: msg.StorePaths{testP1}}}},
		&msg.Generation{},
		&msg.QueryPathInfos{Paths: msg.StorePaths{testP2}, Closure: 1},
		&msg.PathInfos{Infos: msg.PathInfoList{{Path: testP1, NarHash: testH, References: msg.StorePaths{testP2}, NarSize: 42}}},
		&msg.AddSignatures{Path: testP1, Sigs: msg.Strings{"k-1:AAAA"}},
		&msg.AddIndirectRoot{Link: "/home/alice/result"},
		&msg.SyncWithGC{},
		&msg.SetOptions{Overrides: msg.Overrides{{Name: "timeout", Value: "5"}}, MaxJobs: 1},
		&msg.Warnings{Texts: msg.Strings{"w"}},
		&msg.CollectGarbage{Action: msg.GCDeleteDead, MaxFreed: ^uint64(0)},
		&msg.GCResult{Paths: msg.StorePaths{testP1, testP2}, More: true},
		&msg.FindRoots{},
		&msg.VerifyStore{CheckContents: true},
		&msg.Verified{Findings: msg.FindingList{{What: msg.FoundVanished, Path: testP1}}, Errors: true},
		&msg.OptimiseStore{},
		&msg.Optimised{FilesLinked: 1, BytesFreed: 42},
		&msg.Roots{Roots: msg.RootList{{Link: "{temp:7}", Path: testP1}}},
		&msg.BeginUpload{Mode: msg.UploadCA, Name: "src", CAMethod: "nar", Algo: "sha256", References: msg.StorePaths{testP2}, Format: msg.FormatNAR},
		&msg.BeginUpload{Mode: msg.UploadNar, Info: msg.PathInfo{Path: testP1, NarHash: testH, NarSize: 42}, Format: msg.FormatNAR, Size: 42},
		&msg.UploadChannel{ID: 1},
		&msg.FinishUpload{ID: 1, Written: 42},
		&msg.StoreJob{Format: msg.FormatFlat, MaxBytes: 42},
		&msg.Staged{NarSize: 42, Bytes: 42},
		&msg.BuildJob{Builder: "/bin/sh", Args: msg.Strings{"-c", "echo > $out"}, Env: msg.KVs{{Key: "out", Value: string(testP1)}},
			InputPaths: msg.StorePaths{testP2}, Outputs: msg.BuildOutputs{{Name: "out", Path: testP1}}, StoreDir: testDir,
			UID: 30001, GID: 30000, Sandbox: msg.SandboxOn, BuildTop: "/build"},
		&msg.BuildJobMore{InputPaths: msg.StorePaths{testP2}},
		&msg.SandboxReady{},
		&msg.SandboxFailed{Stage: "pivot-root", Errno: 22, Message: "invalid argument"},
		&msg.ParseDrv{MaxSize: 1 << 20},
		&msg.Drv{Outputs: msg.DrvOutputList{{Name: "out", Path: string(testP1)}}, InputSrcs: msg.DrvStrings{string(testP2)},
			Platform: "x86_64-linux", Builder: "/bin/sh", Args: msg.DrvStrings{"-c"}, Env: msg.DrvEnvList{{Key: "out", Value: string(testP1)}}},
		&msg.QueryDrvOutputs{Path: testP1},
		&msg.DrvOutputs{Names: msg.Strings{"out"}, Paths: msg.StorePaths{testP2}},
		&msg.Build{Targets: msg.BuildTargets{{Path: testP1, Built: true}}},
		&msg.BuildEvent{Type: msg.EventStart, Drv: testP1, Text: "building"},
		&msg.BuildDerivation{DrvPath: testP1, Drv: msg.Drv{Outputs: msg.DrvOutputList{{Name: "out", Path: string(testP2)}},
			Platform: "x86_64-linux", Builder: "/bin/sh"}},
		&msg.QueryMissing{Targets: msg.BuildTargets{{Path: testP1}}},
		&msg.Missing{WillBuild: msg.StorePaths{testP1}, WillSubstitute: msg.StorePaths{testP2}, DownloadSize: 1, NarSize: 2},
		&msg.FetchJob{Caches: msg.Strings{"http://127.0.0.1:8080/cache"}, StoreDir: testDir},
		&msg.CacheInfos{Infos: msg.CacheInfoList{{StoreDir: testDir, Priority: 50}}},
		&msg.GetNarInfo{HashPart: string(testP1[11:43])},
		&msg.NarInfo{},
		&msg.GetNar{URL: "nar/x.nar", Compression: "none", NarSize: 42},
		&msg.NarSent{FileBytes: 42, NarBytes: 42},
		&msg.QuerySubstitutable{Paths: msg.StorePaths{testP1}},
		&msg.Substitutable{Infos: msg.SubstInfoList{{Path: testP1, References: msg.StorePaths{testP2}, NarSize: 42}}},
		&msg.BuildResults{Results: msg.BuildResultList{{Status: 3, ErrorMsg: "builder failed"}}},
		&msg.StatusRequest{},
		&msg.Status{Builds: msg.StatusBuilds{{Drv: "/nix/store/qd5f8yds7h8pi7jqbsd5d7sr4jxhsdr2-hello-2.12.1.drv", BuildUser: "nixbld1", BuildUID: 30001}}, More: true},
	}
}

func TestRoundTripEveryKind(t *testing.T) {
	a, b := pair(t)
	if err := b.SetStoreDir(testDir); err != nil {
		t.Fatal(err)
	}
	seen := map[msg.Kind]bool{}
	for _, m := range samples() {
		seen[m.Kind()] = true
		spec, _ := msg.Lookup(m.Kind())
		t.Run(spec.Name, func(t *testing.T) {
			files := sampleFiles(t, spec.Fds)
			if err := a.Send(m, files...); err != nil {
				t.Fatal(err)
			}
			got, gotFiles, err := b.Recv()
			if err != nil {
				t.Fatal(err)
			}
			defer closeAll(gotFiles)
			if !reflect.DeepEqual(got, m) {
				t.Errorf("got %#v, want %#v", got, m)
			}
			if len(gotFiles) != spec.Fds {
				t.Errorf("got %d files, want %d", len(gotFiles), spec.Fds)
			}
		})
	}
	for _, s := range msg.Specs() {
		if !seen[s.Kind] {
			t.Errorf("no sample for %s", s.Name)
		}
	}
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

func TestFdPassing(t *testing.T) {
	a, b := pair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := &msg.Session{HelloOK: msg.HelloOK{User: "alice", StoreDir: testDir}}
	if err := a.Send(m, w); err != nil {
		t.Fatal(err)
	}
	w.Close() // the receiver's copy keeps the pipe open
	got, files, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.(*msg.Session); !ok || len(files) != 1 {
		t.Fatalf("got %T with %d files", got, len(files))
	}
	flags, err := unix.FcntlInt(files[0].Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received fd flags %#x, %v: want close-on-exec", flags, err)
	}
	if _, err := files[0].WriteString("through the socket"); err != nil {
		t.Fatal(err)
	}
	files[0].Close()
	data, err := io.ReadAll(r)
	if err != nil || string(data) != "through the socket" {
		t.Errorf("read %q, %v", data, err)
	}
}

func TestSendRefuses(t *testing.T) {
	a, _ := pair(t)
	if err := a.SetStoreDir("/other/store"); err != nil {
		t.Fatal(err)
	}
	big := make(msg.StorePaths, msg.MaxPaths)
	for i := range big {
		big[i] = "/other/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-hello-2.12.1"
	}
	for _, tc := range []struct {
		name  string
		m     msg.Message
		files int
	}{
		{"invalid", &msg.Error{Class: 0}, 0},
		{"fds on a kind without", &msg.OK{}, 1},
		{"missing fd", &msg.Session{HelloOK: msg.HelloOK{StoreDir: testDir}}, 0},
		{"outside the store dir", &msg.IsValidPath{Path: testP1}, 0},
		{"larger than MaxFrame", &msg.Paths{Paths: big}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := a.Send(tc.m, sampleFiles(t, tc.files)...); !errors.Is(err, ErrInvalid) {
				t.Errorf("Send: %v, want ErrInvalid", err)
			}
		})
	}
}

// frame builds a raw frame.
func frame(k msg.Kind, body []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(k)), body...)
}

func encode(t testing.TB, m msg.Message) []byte {
	b, err := msg.Encode(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestForgedFrames(t *testing.T) {
	hugeList := []byte{0x92, 0xdd, 0x00, 0x0f, 0x42, 0x40, 0xc2}
	for _, tc := range []struct {
		name  string
		frame []byte
		fds   int // pipe ends sent along
		extra int // SCM_RIGHTS messages beyond the first
	}{
		{"unknown kind", frame(0x7ffe, []byte{0x90}), 0, 0},
		{"unknown kind with fds", frame(0x7ffe, []byte{0x90}), 2, 0},
		{"one byte", []byte{0x00}, 0, 0},
		{"fds on an empty frame", []byte{}, 1, 0},
		{"oversize", frame(msg.KindLog, make([]byte, MaxFrame+1)), 0, 0},
		{"oversize truncated", frame(msg.KindLog, make([]byte, MaxFrame+100)), 1, 0},
		{"huge list", frame(msg.KindPaths, hugeList), 0, 0},
		{"out of range level", frame(msg.KindLog, []byte{0x93, 0x08, 0xa0, 0x90}), 0, 0},
		{"narrowing", frame(msg.KindLog, []byte{0x93, 0xcd, 0x01, 0x00, 0xa0, 0x90}), 0, 0},
		{"arity short", frame(msg.KindIsValidPath, []byte{0x90}), 0, 0},
		{"arity long", frame(msg.KindOK, []byte{0x91, 0x00}), 0, 0},
		{"trailing garbage", append(frame(msg.KindOK, []byte{0x90}), 0xc0), 0, 0},
		{"decode error", frame(msg.KindBool, []byte{0x91, 0xa1, 'x'}), 0, 0},
		{"validate", frame(msg.KindError, []byte{0x92, 0x09, 0xa0}), 0, 0},
		{"outside the store dir", frame(msg.KindIsValidPath, encode(t, &msg.IsValidPath{Path: "/other/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-hello"})), 0, 0},
		{"fds on a kind that takes none", frame(msg.KindOK, []byte{0x90}), 1, 0},
		{"too few fds", frame(msg.KindSession, encode(t, &msg.Session{HelloOK: msg.HelloOK{StoreDir: testDir}})), 0, 0},
		{"too many fds", frame(msg.KindSession, encode(t, &msg.Session{HelloOK: msg.HelloOK{StoreDir: testDir}})), 2, 0},
		{"more than MaxFds", frame(msg.KindOK, []byte{0x90}), MaxFds + 1, 0},
		{"far more than MaxFds", frame(msg.KindOK, []byte{0x90}), 3 * MaxFds, 0},
		{"two SCM_RIGHTS", frame(msg.KindSession, encode(t, &msg.Session{HelloOK: msg.HelloOK{StoreDir: testDir}})), 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := rawPair(t)
			if err := c.SetStoreDir(testDir); err != nil {
				t.Fatal(err)
			}
			before := openFds(t)
			var oob []byte
			if tc.fds > 0 {
				var fds []int
				for i := 0; i < tc.fds; i++ {
					var p [2]int
					if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
						t.Fatal(err)
					}
					defer unix.Close(p[0])
					defer unix.Close(p[1])
					fds = append(fds, p[0])
				}
				oob = unix.UnixRights(fds...)
				for i := 0; i < tc.extra; i++ {
					oob = append(oob, unix.UnixRights(fds[0])...)
				}
				before += 2 * tc.fds
			}
			if err := unix.Sendmsg(peer, tc.frame, oob, nil, 0); err != nil {
				t.Fatalf("sendmsg: %v", err)
			}
			m, files, err := c.Recv()
			if !errors.Is(err, ErrViolation) {
				t.Errorf("Recv: %v, %v, %v; want ErrViolation", m, files, err)
			}
			closeAll(files)
			if after := openFds(t); after != before {
				t.Errorf("%d fds open after Recv, %d before", after, before)
			}
			t.Log(err)
		})
	}
}

func TestEOF(t *testing.T) {
	a, b := pair(t)
	a.Close()
	if _, _, err := b.Recv(); err != io.EOF {
		t.Errorf("Recv after peer close: %v, want io.EOF", err)
	}
}

func TestCloseUnblocksRecv(t *testing.T) {
	_, b := pair(t)
	done := make(chan error)
	go func() {
		_, _, err := b.Recv()
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	b.Close()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, ErrViolation) {
			t.Errorf("Recv after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still blocked after Close")
	}
}

func TestNewConnRefusesStream(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	before := openFds(t)
	if _, err := NewConn(os.NewFile(uintptr(fds[0]), "stream")); err == nil {
		t.Error("NewConn accepted a SOCK_STREAM socket")
	}
	if after := openFds(t); after != before-1 {
		t.Errorf("NewConn did not close its file: %d fds before, %d after", before, after)
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	client, server := pair(b)
	req := &msg.QueryPathInfo{Path: testP1}
	ans := &msg.PathInfo{Path: testP1, NarHash: testH, References: msg.StorePaths{testP1, testP2}, NarSize: 1 << 20, RegistrationTime: 1700000000, Sigs: msg.Strings{"cache.nixos.org-1:AAAA"}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := server.Recv(); err != nil {
				return
			}
			if err := server.Send(ans); err != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		if err := client.Send(req); err != nil {
			b.Fatal(err)
		}
		if _, _, err := client.Recv(); err != nil {
			b.Fatal(err)
		}
	}
	client.Close()
	<-done
}

// TestConcurrentSenders: sends from several goroutines are serialised and
// every frame arrives whole, while another goroutine receives.
func TestConcurrentSenders(t *testing.T) {
	a, b := pair(t)
	const senders, each = 4, 200
	errs := make(chan error, senders)
	for s := 0; s < senders; s++ {
		go func() {
			for i := 0; i < each; i++ {
				m := &msg.Log{Level: uint64(s), Msg: strings.Repeat("x", i)}
				if err := a.Send(m); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	counts := make([]int, senders)
	for n := 0; n < senders*each; n++ {
		m, _, err := b.Recv()
		if err != nil {
			t.Fatal(err)
		}
		l := m.(*msg.Log)
		if len(l.Msg) != counts[l.Level] {
			t.Fatalf("sender %d: message %d has length %d", l.Level, counts[l.Level], len(l.Msg))
		}
		counts[l.Level]++
	}
	for s := 0; s < senders; s++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestLargestFrame sends the largest Paths that fits in MaxFrame: SEQPACKET
// must carry it whole (the default send buffer is 212992 bytes).
func TestLargestFrame(t *testing.T) {
	a, b := pair(t)
	long := msg.StorePath(testDir + "/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-" + strings.Repeat("n", msg.MaxName))
	m := msg.Paths{Paths: make(msg.StorePaths, 500, 600)} // 500 × 257 bytes: just below
	for i := range m.Paths {
		m.Paths[i] = long
	}
	for {
		m.Paths = append(m.Paths, long)
		body, err := msg.Encode(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		if len(body) > MaxFrame {
			m.Paths = m.Paths[:len(m.Paths)-1]
			break
		}
	}
	if err := a.Send(&m); err != nil {
		t.Fatal(err)
	}
	got, _, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.(*msg.Paths).Paths); n != len(m.Paths) {
		t.Errorf("received %d paths, sent %d", n, len(m.Paths))
	}
	m.Paths = append(m.Paths, long)
	if err := a.Send(&m); !errors.Is(err, ErrInvalid) {
		t.Errorf("Send of a body over MaxFrame: %v", err)
	}
}

func TestDeadlines(t *testing.T) {
	a, b := pair(t)
	if err := b.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Recv(); !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrViolation) {
		t.Errorf("Recv past its deadline: %v", err)
	}
	// Fill the socket: a blocked Send gives up at its deadline.
	if err := a.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	m := &msg.Log{Msg: strings.Repeat("x", msg.MaxText)}
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		err = a.Send(m)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Send into a full socket past its deadline: %v", err)
	}
}

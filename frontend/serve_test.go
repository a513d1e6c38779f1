package frontend

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"privnix/frontend/wire"
)

const testStore = "/tmp/teststore/store" // the store dir of Appendix A.1

// client is a hand-written worker-protocol client built on the wire package.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *wire.Reader
	w    *wire.Writer
	v    wire.Version // negotiated
	done chan error   // Serve's result
}

// start runs Serve on one end of a pipe and returns the other end.
func start(t *testing.T, sess Session, b Backend) *client {
	t.Helper()
	if sess.StoreDir == "" {
		sess.StoreDir = testStore
	}
	cc, sc := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), sc, sess, b); sc.Close() }()
	t.Cleanup(func() { cc.Close() })
	_ = cc.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, conn: cc, r: wire.NewReader(cc), w: wire.NewWriter(cc), done: done}
}

// handshake runs the client side of §2.2 and returns the daemon's answers.
func (c *client) handshake(cv wire.Version, features []string) (daemon wire.Version, nixVersion string, trust uint64, msgs []wire.StderrMsg) {
	c.t.Helper()
	c.w.U64(wire.Magic1)
	c.must(c.w.Flush())
	magic, err := c.r.U64()
	c.must(err)
	if magic != wire.Magic2 {
		c.t.Fatalf("daemon magic 0x%x", magic)
	}
	dv, err := c.r.U64()
	c.must(err)
	daemon = wire.Version(dv)
	c.v = min(cv, daemon)
	c.w.U64(uint64(cv))
	if c.v.AtLeast(38) {
		c.w.StringSet(features)
		c.must(c.w.Flush())
		theirs, err := c.r.StringSet(wire.MaxFeatures, 256, "features")
		c.must(err)
		if len(theirs) != 0 {
			c.t.Fatalf("daemon features %q, want none", theirs)
		}
	}
	c.w.U64(0) // cpu affinity
	c.w.U64(0) // reserveSpace
	c.must(c.w.Flush())
	nixVersion, trust, err = wire.ReadHandshakeInfo(c.r, c.v)
	c.must(err)
	msgs = c.stderr()
	return daemon, nixVersion, trust, msgs
}

func (c *client) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

// stderr reads messages up to and including LAST or ERROR.
func (c *client) stderr() []wire.StderrMsg {
	c.t.Helper()
	var msgs []wire.StderrMsg
	for {
		m, err := c.r.StderrMessage(c.v)
		c.must(err)
		msgs = append(msgs, m)
		if m.Kind == wire.StderrLast || m.Kind == wire.StderrError {
			return msgs
		}
	}
}

// op sends an operation and returns its stderr messages; the last one is LAST or ERROR.
func (c *client) op(n uint64, args func(w *wire.Writer)) []wire.StderrMsg {
	c.t.Helper()
	c.w.U64(n)
	if args != nil {
		args(c.w)
	}
	c.must(c.w.Flush())
	return c.stderr()
}

func last(msgs []wire.StderrMsg) wire.StderrMsg { return msgs[len(msgs)-1] }

func (c *client) wantLast(msgs []wire.StderrMsg) {
	c.t.Helper()
	if m := last(msgs); m.Kind != wire.StderrLast {
		c.t.Fatalf("got %v, want LAST", m)
	}
}

func (c *client) wantError(msgs []wire.StderrMsg, text string) {
	c.t.Helper()
	if m := last(msgs); m.Kind != wire.StderrError || !strings.Contains(m.Err.Message, text) {
		c.t.Fatalf("got %v, want an error containing %q", m, text)
	}
}

// wantClosed checks that the daemon ended the connection.
func (c *client) wantClosed() {
	c.t.Helper()
	if _, err := c.r.U64(); err == nil {
		c.t.Fatal("the connection is still open")
	}
	if err := <-c.done; err == nil {
		c.t.Fatal("Serve returned nil after closing the connection")
	}
}

func defaultOptions() wire.ClientOptions {
	return wire.ClientOptions{Verbosity: wire.LvlInfo, MaxBuildJobs: 1, UseBuildHook: true, BuildCores: 2, UseSubstitutes: true}
}

func (c *client) setOptions(o wire.ClientOptions) []wire.StderrMsg {
	return c.op(19, func(w *wire.Writer) { wire.WriteClientOptions(w, c.v, o) })
}

// TestHandshakeBytes checks the daemon's first 0x28 bytes against Appendix A.1.
func TestHandshakeBytes(t *testing.T) {
	c := start(t, Session{NixVersion: "2.8.0"}, newMemStore(testStore))
	c.w.U64(wire.Magic1)
	c.w.U64(0x122)
	c.w.U64(0)
	c.w.U64(0)
	c.must(c.w.Flush())
	got := make([]byte, 0x28)
	if _, err := io.ReadFull(c.conn, got); err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("6f69786400000000" + "2201000000000000" + "0500000000000000" + "322e382e30000000" + "73746c6100000000")
	if !bytes.Equal(got, want) {
		t.Fatalf("handshake bytes\n got %x\nwant %x", got, want)
	}
}

func TestHandshakeVersions(t *testing.T) {
	tests := []struct {
		client, daemon wire.Version
		wantNix        bool
		wantTrust      bool
	}{
		{wire.V(18), 0, false, false},
		{wire.V(21), 0, false, false},
		{wire.V(26), 0, false, false},
		{wire.V(34), 0, true, false},
		{wire.V(37), 0, true, false},
		{wire.V(38), 0, true, false},
		{wire.V(34), wire.V(35), true, false}, // negotiated 1.34: no trust byte
		{wire.V(35), wire.V(35), true, true},
		{wire.V(37), wire.V(37), true, true},
		{wire.V(38), wire.V(38), true, true},
		{wire.V(21), wire.V(38), false, false},
	}
	for _, tt := range tests {
		for _, trusted := range []bool{false, true} {
			name := tt.client.String() + "/daemon-" + tt.daemon.String()
			t.Run(name, func(t *testing.T) {
				mem := newMemStore(testStore)
				c := start(t, Session{Trusted: trusted, ProtocolVersion: tt.daemon, NixVersion: "2.8.0-test"}, mem)
				dv, nv, trust, msgs := c.handshake(tt.client, []string{"some-future-feature"})
				want := tt.daemon
				if want == 0 {
					want = DefaultProtocolVersion
				}
				if dv != want {
					t.Fatalf("daemon advertised %s, want %s", dv, want)
				}
				if (nv == "2.8.0-test") != tt.wantNix {
					t.Fatalf("version string %q (wanted: %v)", nv, tt.wantNix)
				}
				wantTrust := uint64(0)
				if tt.wantTrust {
					wantTrust = map[bool]uint64{true: wire.Trusted, false: wire.NotTrusted}[trusted]
				}
				if trust != wantTrust {
					t.Fatalf("trust %d, want %d", trust, wantTrust)
				}
				c.wantLast(msgs)
				c.wantLast(c.setOptions(defaultOptions()))
				c.wantLast(c.op(1, func(w *wire.Writer) { w.String(testStore + "/ykbwnzncxwzhgipdx7hyxf9g7arl81jd-x") }))
				if ok, _ := c.r.U64(); ok != 0 {
					t.Fatal("an empty store says a path is valid")
				}
				if len(mem.opts) != 1 {
					t.Fatalf("backend got %d SetOptions", len(mem.opts))
				}
			})
		}
	}
}

func TestClientTooOld(t *testing.T) {
	c := start(t, Session{}, newMemStore(testStore))
	c.w.U64(wire.Magic1)
	c.w.U64(uint64(wire.V(17)))
	c.must(c.w.Flush())
	for range 2 { // magic and version come first
		if _, err := c.r.U64(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-c.done; err == nil || !strings.Contains(err.Error(), "the Nix client version is too old") {
		t.Fatalf("Serve returned %v", err)
	}
}

func TestBadMagic(t *testing.T) {
	c := start(t, Session{}, newMemStore(testStore))
	c.w.U64(0x1234)
	c.must(c.w.Flush())
	if err := <-c.done; err == nil || !strings.Contains(err.Error(), "protocol mismatch") {
		t.Fatalf("Serve returned %v", err)
	}
}

func TestRefusal(t *testing.T) {
	for _, v := range []wire.Version{wire.V(18), wire.V(25), wire.V(26), wire.V(34), wire.V(38)} {
		t.Run(v.String(), func(t *testing.T) {
			refusal := "user 'mallory' is not allowed to connect to the Nix daemon (not in 'allowed-users')"
			c := start(t, Session{User: "mallory", Refusal: refusal}, newMemStore(testStore))
			_, _, _, msgs := c.handshake(v, nil)
			c.wantError(msgs, refusal)
			if m := last(msgs); v.AtLeast(26) == (m.Err.Status != 0) {
				t.Fatalf("error form for %s: status %d", v, m.Err.Status)
			}
			if err := <-c.done; !errors.Is(err, ErrRefused) {
				t.Fatalf("Serve returned %v", err)
			}
		})
	}
}

func TestSetOptions(t *testing.T) {
	tests := []struct {
		name      string
		v         wire.Version
		verbosity uint64
		overrides []wire.Pair
		warnings  int
	}{
		{"warning shown", wire.V(34), wire.LvlInfo, []wire.Pair{{Key: "narinfo-cache-negative-ttl", Value: "5"}, {Key: "substituters", Value: "https://example.org"}}, 1},
		{"warning filtered by verbosity 0", wire.V(34), wire.LvlError, []wire.Pair{{Key: "substituters", Value: "https://example.org"}}, 0},
		{"no overrides", wire.V(21), wire.LvlVomit, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := newMemStore(testStore)
			c := start(t, Session{}, mem)
			c.handshake(tt.v, nil)
			o := defaultOptions()
			o.KeepFailed, o.MaxSilentTime, o.Verbosity, o.VerboseBuild = true, 77, tt.verbosity, wire.LvlVomit
			o.Overrides = tt.overrides
			msgs := c.setOptions(o)
			c.wantLast(msgs)
			if len(msgs)-1 != tt.warnings {
				t.Fatalf("got %v, want %d warnings", msgs, tt.warnings)
			}
			if tt.warnings > 0 && !strings.Contains(msgs[0].Text, "warning:") {
				t.Fatalf("warning text %q", msgs[0].Text)
			}
			got := mem.opts[0]
			if !got.KeepFailed || got.MaxSilentTime != 77 || got.Verbosity != tt.verbosity || len(got.Overrides) != len(tt.overrides) {
				t.Fatalf("backend got %+v", got)
			}
		})
	}
}

// addHello adds "hello\n" as protoref-hello.txt (Appendix A.1) with the ≥1.25 framed AddToStore.
func (c *client) addHello() []wire.StderrMsg {
	return c.op(7, func(w *wire.Writer) {
		w.String("protoref-hello.txt")
		w.String("fixed:r:sha256")
		w.StringSet(nil)
		w.Bool(false)
		fw := wire.NewFramedWriter(w)
		nar := fileNAR([]byte("hello\n"))
		_, _ = fw.Write(nar[:50])
		_, _ = fw.Write(nar[50:])
		w.U64(0)
	})
}

// helloPath is what real Nix 2.8 computes for Appendix A.1's add (checked with
// NIX_STORE_DIR=/tmp/teststore/store nix-store --print-fixed-path --recursive sha256 1c37…fc13
// protoref-hello.txt). The hash part printed in Appendix A.1 (ykbwnzncxw…) does not reproduce.
const helloPath = testStore + "/fa57s9pjc6vj5hp03spc6yjr5izlqdin-protoref-hello.txt"

func TestAddAndQuery(t *testing.T) {
	c := start(t, Session{}, newMemStore(testStore))
	c.handshake(wire.V(34), nil)
	c.wantLast(c.setOptions(defaultOptions()))
	c.wantLast(c.addHello())
	info, err := wire.ReadValidPathInfo(c.r, c.v)
	c.must(err)
	if info.Path != helloPath || info.NarHash != "1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13" || info.NarSize != 120 ||
		info.CA != "fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw" {
		t.Fatalf("AddToStore reply %+v differs from Appendix A.1", info)
	}
	c.wantLast(c.op(26, func(w *wire.Writer) { w.String(helloPath) }))
	if valid, _ := c.r.Bool(); !valid {
		t.Fatal("QueryPathInfo: not valid")
	}
	u, err := wire.ReadUnkeyedValidPathInfo(c.r, c.v)
	c.must(err)
	if u.NarHash != info.NarHash {
		t.Fatalf("QueryPathInfo narHash %s", u.NarHash)
	}
	c.wantLast(c.op(31, func(w *wire.Writer) {
		w.StringSet([]string{helloPath, testStore + "/00000000000000000000000000000000-x"})
		w.Bool(false)
	}))
	valid, err := c.r.StringSet(10, wire.MaxPathLen, "valid")
	c.must(err)
	if len(valid) != 1 || valid[0] != helloPath {
		t.Fatalf("QueryValidPaths %q", valid)
	}
	c.wantLast(c.op(29, func(w *wire.Writer) { w.String("fa57s9pjc6vj5hp03spc6yjr5izlqdin") }))
	if p, _ := c.r.String(wire.MaxPathLen, "p"); p != helloPath {
		t.Fatalf("QueryPathFromHashPart %q", p)
	}
	c.wantLast(c.op(38, func(w *wire.Writer) { w.String(helloPath) }))
	var out bytes.Buffer
	c.must(wire.CopyNAR(&out, c.r))
	if !bytes.Equal(out.Bytes(), fileNAR([]byte("hello\n"))) {
		t.Fatal("NarFromPath returned another NAR")
	}
	c.wantLast(c.op(4, func(w *wire.Writer) { w.String(helloPath) }))
	if h, _ := c.r.String(100, "h"); h != info.NarHash {
		t.Fatalf("QueryPathHash %q", h)
	}
}

// TestOldUploads covers the pre-framing upload forms: inline NARs and STDERR_READ.
func TestOldUploads(t *testing.T) {
	nar := fileNAR([]byte("hello\n"))
	tests := []struct {
		v    wire.Version
		tunn bool
	}{{wire.V(18), false}, {wire.V(21), true}, {wire.V(22), true}, {wire.V(24), false}}
	for _, tt := range tests {
		t.Run(tt.v.String(), func(t *testing.T) {
			c := start(t, Session{Trusted: true}, newMemStore(testStore))
			c.handshake(tt.v, nil)
			c.wantLast(c.op(7, func(w *wire.Writer) {
				w.String("protoref-hello.txt")
				w.Bool(true)
				w.U64(1)
				w.String("sha256")
				_, _ = w.Write(nar)
			}))
			if p, _ := c.r.String(wire.MaxPathLen, "p"); p != helloPath {
				t.Fatalf("old AddToStore gave %q", p)
			}
			// AddToStoreNar of a second path.
			other := testStore + "/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-other"
			other2 := fileNAR([]byte("other"))
			info := wire.ValidPathInfo{Path: other, UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{
				NarHash: hex.EncodeToString(sum("sha256", other2)), NarSize: uint64(len(other2)), Sigs: []string{"k:sig"}}}
			c.w.U64(39)
			wire.WriteValidPathInfo(c.w, wire.V(16), info)
			c.w.Bool(false)
			c.w.Bool(false)
			switch {
			case tt.v.AtLeast(23):
				fw := wire.NewFramedWriter(c.w)
				_, _ = fw.Write(other2)
				c.w.U64(0)
			case !tt.tunn:
				_, _ = c.w.Write(other2)
			}
			c.must(c.w.Flush())
			for tt.tunn {
				m, err := c.r.StderrMessage(c.v)
				c.must(err)
				if m.Kind == wire.StderrLast {
					break
				}
				if m.Kind != wire.StderrRead {
					t.Fatalf("got %v during a tunnelled upload", m)
				}
				n := min(int(m.N), len(other2))
				c.w.Bytes(other2[:n])
				other2 = other2[n:]
				c.must(c.w.Flush())
			}
			if !tt.tunn {
				c.wantLast(c.stderr())
			}
			c.wantLast(c.op(1, func(w *wire.Writer) { w.String(other) }))
			if ok, _ := c.r.Bool(); !ok {
				t.Fatal("imported path is not valid")
			}
		})
	}
}

func TestErrors(t *testing.T) {
	bad := func(w *wire.Writer) { w.String("/etc/passwd") }
	tests := []struct {
		name    string
		v       wire.Version
		trusted bool
		op      uint64
		args    func(w *wire.Writer)
		want    string
		closes  bool
	}{
		{"untrusted signatures", wire.V(34), false, 37, func(w *wire.Writer) { w.String(helloPath); w.StringSet([]string{"k:s"}) },
			"you are not privileged to add signatures", false},
		{"untrusted signatures old", wire.V(21), false, 37, func(w *wire.Writer) { w.String(helloPath); w.StringSet([]string{"k:s"}) },
			"you are not privileged to add signatures", false},
		{"not implemented", wire.V(34), true, 27, nil,
			"operation 'ImportPaths' is not yet implemented by privnix", false},
		{"1.29 bare drv means its outputs", wire.V(29), true, 9, func(w *wire.Writer) {
			w.Strings([]string{testStore + "/ykbwnzncxwzhgipdx7hyxf9g7arl81jd-a.drv"})
			w.U64(2)
		},
			"ykbwnzncxwzhgipdx7hyxf9g7arl81jd-a.drv' is required, but there is no substituter", false},
		{"collect garbage ignoring liveness", wire.V(34), false, 20, func(w *wire.Writer) {
			w.U64(3)
			w.StringSet([]string{helloPath})
			w.U64(1)
			w.U64(^uint64(0))
			w.U64(0)
			w.U64(0)
			w.U64(0)
		}, "you are not allowed to ignore liveness", false},
		{"repair untrusted", wire.V(34), false, 9, func(w *wire.Writer) { w.Strings([]string{helloPath}); w.U64(1) },
			"repairing is not allowed because you are not in 'trusted-users'", true},
		{"perm root untrusted", wire.V(37), false, 47, func(w *wire.Writer) { w.String(helloPath); w.String("/tmp/r") },
			"you are not privileged to create perm roots", true},
		{"build log untrusted drains", wire.V(34), false, 45, func(w *wire.Writer) {
			w.String("ykbwnzncxwzhgipdx7hyxf9g7arl81jd-a.drv")
			fw := wire.NewFramedWriter(w)
			_, _ = fw.Write([]byte("log line\n"))
			w.U64(0)
		}, "you are not privileged to add logs", false},
		{"bad path", wire.V(34), true, 1, bad, "path '/etc/passwd' is not in the Nix store", true},
		{"unknown op", wire.V(34), true, 99, nil, "invalid operation 99", true},
		{"oversized string", wire.V(34), true, 1, func(w *wire.Writer) { w.U64(1 << 40) }, "exceeds the limit", true},
		{"bad method", wire.V(34), true, 7, func(w *wire.Writer) { w.String("x"); w.String("fixed:sha3"); w.U64(0); w.U64(0) }, "unknown hash algorithm", true},
		{"import unsigned", wire.V(34), false, 39, func(w *wire.Writer) {
			nar := fileNAR([]byte("x"))
			wire.WriteValidPathInfo(w, wire.V(16), wire.ValidPathInfo{Path: helloPath, UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{
				NarHash: hex.EncodeToString(sum("sha256", nar)), NarSize: uint64(len(nar))}})
			w.Bool(false)
			w.Bool(true) // dontCheckSigs is ignored for untrusted clients
			fw := wire.NewFramedWriter(w)
			_, _ = fw.Write(nar)
			w.U64(0)
		}, "lacks a valid signature", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := start(t, Session{Trusted: tt.trusted}, newMemStore(testStore))
			c.handshake(tt.v, nil)
			msgs := c.op(tt.op, tt.args)
			c.wantError(msgs, tt.want)
			if structured := last(msgs).Err.Status == 0; structured != tt.v.AtLeast(26) {
				t.Fatalf("error form for %s: status %d", tt.v, last(msgs).Err.Status)
			}
			if tt.closes {
				c.wantClosed()
				return
			}
			c.wantLast(c.op(23, nil)) // the connection is still in sync
			if ps, err := c.r.StringSet(10, wire.MaxPathLen, "all"); err != nil || len(ps) != 0 {
				t.Fatalf("QueryAllValidPaths: %q %v", ps, err)
			}
		})
	}
}

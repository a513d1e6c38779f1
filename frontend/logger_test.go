package frontend

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"privnix/frontend/wire"
)

// chattyStore logs and reports activities from QueryAllValidPaths, like a real query would.
type chattyStore struct{ *memStore }

func (s chattyStore) QueryAllValidPaths(ctx context.Context) ([]string, error) {
	l := LoggerFrom(ctx)
	id := l.StartActivity(wire.LvlInfo, 0, "querying all paths", nil, 0)
	l.Result(id, 105, []wire.Field{wire.IntField(1), wire.IntField(2), wire.IntField(0), wire.IntField(0)})
	l.Log(wire.LvlInfo, "an info line")
	l.Log(wire.LvlDebug, "a debug line")
	l.StopActivity(id)
	return s.memStore.QueryAllValidPaths(ctx)
}

func (s chattyStore) NarFromPath(ctx context.Context, p string, w io.Writer) error {
	return Errorf("path '%s' is not valid", p)
}

func TestLogger(t *testing.T) {
	tests := []struct {
		v         wire.Version
		verbosity uint64
		want      []string // kinds and texts of the messages before LAST
	}{
		{wire.V(34), wire.LvlInfo, []string{"start querying all paths", "result 105", "next an info line", "stop"}},
		{wire.V(34), wire.LvlDebug, []string{"start querying all paths", "result 105", "next an info line", "next a debug line", "stop"}},
		{wire.V(34), wire.LvlError, []string{"start querying all paths", "result 105", "stop"}},
		{wire.V(19), wire.LvlInfo, []string{"next querying all paths...", "next an info line"}},
		{wire.V(19), wire.LvlError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.v.String(), func(t *testing.T) {
			c := start(t, Session{}, chattyStore{newMemStore(testStore)})
			c.handshake(tt.v, nil)
			o := defaultOptions()
			o.Verbosity = tt.verbosity
			c.wantLast(c.setOptions(o))
			msgs := c.op(23, nil)
			c.wantLast(msgs)
			var got []string
			for _, m := range msgs[:len(msgs)-1] {
				switch m.Kind {
				case wire.StderrStartActivity:
					got = append(got, "start "+m.Activity.Text)
				case wire.StderrResult:
					got = append(got, "result 105")
				case wire.StderrNext:
					got = append(got, "next "+strings.TrimSuffix(m.Text, "\n"))
				case wire.StderrStopActivity:
					got = append(got, "stop")
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("messages %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNarFromPathError(t *testing.T) {
	c := start(t, Session{}, chattyStore{newMemStore(testStore)})
	c.handshake(wire.V(34), nil)
	c.wantError(c.op(38, func(w *wire.Writer) { w.String(helloPath) }), "is not valid")
	c.wantLast(c.op(13, nil)) // still usable: SyncWithGC
	if one, _ := c.r.U64(); one != 1 {
		t.Fatalf("SyncWithGC answered %d", one)
	}
}

func TestAddMultipleToStore(t *testing.T) {
	mk := func(name, data string) (wire.ValidPathInfo, []byte) {
		nar := fileNAR([]byte(data))
		return wire.ValidPathInfo{Path: testStore + "/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-" + name, UnkeyedValidPathInfo: wire.UnkeyedValidPathInfo{
			NarHash: hex.EncodeToString(sum("sha256", nar)), NarSize: uint64(len(nar)), Sigs: []string{"k:s"}, Ultimate: true}}, nar
	}
	for _, trusted := range []bool{true, false} {
		mem := newMemStore(testStore)
		c := start(t, Session{Trusted: trusted}, mem)
		c.handshake(wire.V(34), nil)
		a, anar := mk("a", "first")
		b, bnar := mk("b", "second")
		b.Sigs = nil // needs dontCheckSigs, which only a trusted client gets
		msgs := c.op(44, func(w *wire.Writer) {
			w.U64(0)
			w.U64(1)
			fw := wire.NewFramedWriter(w)
			var inner strings.Builder
			iw := wire.NewWriter(&inner)
			iw.U64(2)
			wire.WriteValidPathInfo(iw, wire.V(16), a)
			_, _ = iw.Write(anar)
			wire.WriteValidPathInfo(iw, wire.V(16), b)
			_, _ = iw.Write(bnar)
			_ = iw.Flush()
			s := inner.String()
			_, _ = fw.Write([]byte(s[:100]))
			_, _ = fw.Write([]byte(s[100:]))
			w.U64(0)
		})
		if trusted {
			c.wantLast(msgs)
		} else {
			c.wantError(msgs, "lacks a valid signature")
		}
		if info, ok := mem.info(a.Path); !ok || info.Ultimate {
			t.Fatalf("trusted=%v: first path %+v valid=%v (ultimate must be cleared)", trusted, info, ok)
		}
		if _, ok := mem.info(b.Path); ok != trusted {
			t.Fatalf("trusted=%v: unsigned path valid=%v", trusted, ok)
		}
		c.wantLast(c.op(13, nil))
	}
}

func TestContextEndsServe(t *testing.T) {
	cc, sc := net.Pipe()
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sc, Session{StoreDir: testStore}, newMemStore(testStore)) }()
	cancel() // Serve is blocked reading the client hello
	if err := <-done; err == nil {
		t.Fatal("Serve returned nil after its context ended mid-handshake")
	}
}

type failingStore struct{ *memStore }

func (failingStore) QueryReferrers(ctx context.Context, p string) ([]string, error) {
	return nil, errors.New("database exploded at offset 42")
}

func TestInternalErrorIsLoggedNotSent(t *testing.T) {
	var logs bytes.Buffer
	c := start(t, Session{Log: slog.New(slog.NewTextHandler(&logs, nil)), User: "alice"}, failingStore{newMemStore(testStore)})
	c.handshake(wire.V(34), nil)
	msgs := c.op(6, func(w *wire.Writer) { w.String(helloPath) })
	c.wantError(msgs, "internal error in operation 'QueryReferrers'")
	if strings.Contains(last(msgs).Err.Message, "exploded") {
		t.Fatalf("the client saw the internal detail: %q", last(msgs).Err.Message)
	}
	if !strings.Contains(logs.String(), "database exploded at offset 42") || !strings.Contains(logs.String(), "alice") {
		t.Fatalf("log: %q", logs.String())
	}
	c.wantLast(c.op(13, nil))
}

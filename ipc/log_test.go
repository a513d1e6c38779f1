package ipc

import (
	"log/slog"
	"strings"
	"testing"

	"privnix/ipc/msg"
)

func TestLogHandler(t *testing.T) {
	child, monitor := pair(t)
	h := NewLogHandler(child, slog.LevelDebug)
	log := slog.New(h).With("role", "frontend").WithGroup("req")
	for _, tc := range []struct {
		log  func()
		want msg.Log
	}{
		{func() { log.Info("query", "path", string(testP1)) },
			msg.Log{Level: msg.LevelInfo, Msg: "query", Attrs: msg.Attrs{{Key: "role", Value: "frontend"}, {Key: "req.path", Value: string(testP1)}}}},
		{func() { log.Error(strings.Repeat("x", 5000), "bad key!", 1) },
			msg.Log{Level: msg.LevelError, Msg: strings.Repeat("x", msg.MaxText), Attrs: msg.Attrs{{Key: "role", Value: "frontend"}, {Key: "req.bad_key_", Value: "1"}}}},
		{func() { log.Debug("d", slog.Group("g", "a", strings.Repeat("v", 2000))) },
			msg.Log{Level: msg.LevelDebug, Msg: "d", Attrs: msg.Attrs{{Key: "role", Value: "frontend"}, {Key: "req.g.a", Value: strings.Repeat("v", msg.MaxAttrValue)}}}},
		{func() {
			args := make([]any, 0, 2*(msg.MaxAttrs+5))
			for i := 0; i < msg.MaxAttrs+5; i++ {
				args = append(args, "k", i)
			}
			log.Warn("many", args...)
		}, msg.Log{Level: msg.LevelWarn, Msg: "many"}},
	} {
		tc.log()
		got, _, err := monitor.Recv()
		if err != nil {
			t.Fatal(err)
		}
		l := got.(*msg.Log)
		if tc.want.Msg == "many" {
			if len(l.Attrs) != msg.MaxAttrs {
				t.Errorf("got %d attrs, want %d", len(l.Attrs), msg.MaxAttrs)
			}
			continue
		}
		if l.Level != tc.want.Level || l.Msg != tc.want.Msg || len(l.Attrs) != len(tc.want.Attrs) {
			t.Errorf("got %+v, want %+v", l, tc.want)
			continue
		}
		for i := range l.Attrs {
			if l.Attrs[i] != tc.want.Attrs[i] {
				t.Errorf("attr %d: got %+v, want %+v", i, l.Attrs[i], tc.want.Attrs[i])
			}
		}
	}
	if h.Dropped() != 0 {
		t.Errorf("dropped %d", h.Dropped())
	}
}

// TestLogHandlerNeverBlocks fills the channel (nobody reads) and then closes
// the peer: logging returns at once and counts every drop.
func TestLogHandlerNeverBlocks(t *testing.T) {
	child, monitor := pair(t)
	h := NewLogHandler(child, nil)
	log := slog.New(h)
	log.Debug("below the level: neither sent nor dropped")
	const n = 5000 // far more than a socket buffer holds
	for i := 0; i < n; i++ {
		log.Info(strings.Repeat("x", 1000))
	}
	d := h.Dropped()
	if d == 0 || d >= n {
		t.Errorf("dropped %d of %d", d, n)
	}
	monitor.Close()
	log.Info("peer gone")
	if h.Dropped() != d+1 {
		t.Errorf("dropped %d after the peer closed, want %d", h.Dropped(), d+1)
	}
}

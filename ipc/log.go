package ipc

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"privnix/ipc/msg"
)

// LogHandler is a slog.Handler that sends each record as a msg.Log over a
// Conn without ever blocking: when the channel is full, busy or broken the
// record is dropped and counted. Children use it for their log channel.
type LogHandler struct {
	c      *Conn
	level  slog.Leveler
	state  *logState
	attrs  []msg.Attr // from WithAttrs, already prefixed
	prefix string     // group prefix from WithGroup, "a.b."
}

type logState struct {
	dropped atomic.Uint64
}

// NewLogHandler returns a handler sending records at or above level (nil:
// slog.LevelInfo) over c.
func NewLogHandler(c *Conn, level slog.Leveler) *LogHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &LogHandler{c: c, level: level, state: new(logState)}
}

// Dropped returns how many records this handler and those derived from it
// have dropped.
func (h *LogHandler) Dropped() uint64 { return h.state.dropped.Load() }

// Enabled implements slog.Handler.
func (h *LogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle implements slog.Handler. It never returns an error: a record that
// cannot be sent is counted in Dropped.
func (h *LogHandler) Handle(_ context.Context, r slog.Record) error {
	m := msg.Log{Level: NixLevel(r.Level), Msg: truncate(r.Message, msg.MaxText)}
	m.Attrs = make(msg.Attrs, 0, min(len(h.attrs)+r.NumAttrs(), msg.MaxAttrs))
	m.Attrs = append(m.Attrs, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		m.Attrs = appendAttr(m.Attrs, h.prefix, a)
		return len(m.Attrs) < msg.MaxAttrs
	})
	if err := h.c.TrySend(&m); err != nil {
		h.state.dropped.Add(1)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (h *LogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append([]msg.Attr(nil), h.attrs...)
	for _, a := range as {
		h2.attrs = appendAttr(h2.attrs, h.prefix, a)
	}
	return &h2
}

// WithGroup implements slog.Handler.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	return &h2
}

// appendAttr flattens a into attrs ("group.key"), making keys valid and
// truncating values, and keeps at most msg.MaxAttrs.
func appendAttr(attrs []msg.Attr, prefix string, a slog.Attr) []msg.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			attrs = appendAttr(attrs, p, g)
		}
		return attrs
	}
	if a.Equal(slog.Attr{}) || len(attrs) >= msg.MaxAttrs {
		return attrs
	}
	return append(attrs, msg.Attr{
		Key:   attrKey(prefix + a.Key),
		Value: truncate(v.String(), msg.MaxAttrValue),
	})
}

// attrKey maps a key onto msg.Attr's alphabet: other bytes become '_'.
func attrKey(k string) string {
	k = truncate(k, msg.MaxAttrKey)
	if k == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, k)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// NixLevel maps a slog level onto Nix's verbosity (msg.LevelError..LevelVomit).
func NixLevel(l slog.Level) uint64 {
	switch {
	case l >= slog.LevelError:
		return msg.LevelError
	case l >= slog.LevelWarn:
		return msg.LevelWarn
	case l >= slog.LevelInfo:
		return msg.LevelInfo
	case l >= slog.LevelDebug:
		return msg.LevelDebug
	default:
		return msg.LevelVomit
	}
}

// SlogLevel maps a Nix verbosity onto a slog level, for the monitor's side.
func SlogLevel(level uint64) slog.Level {
	switch {
	case level == msg.LevelError:
		return slog.LevelError
	case level == msg.LevelWarn:
		return slog.LevelWarn
	case level <= msg.LevelInfo:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

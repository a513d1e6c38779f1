package frontend

import (
	"context"
	"strings"
	"sync/atomic"

	"privnix/frontend/wire"
)

// Logger sends log lines and activities to the client during an operation's work.
// Lines above the client's verbosity (from SetOptions) are dropped; activities are
// sent to ≥1.20 clients, older ones get the activity text as a log line.
type Logger struct {
	c         *conn
	verbosity atomic.Uint64
	nextID    atomic.Uint64
}

type loggerKey struct{}

// LoggerFrom returns the Logger of the connection whose operation ctx belongs to,
// or nil (whose methods do nothing).
func LoggerFrom(ctx context.Context) *Logger {
	l, _ := ctx.Value(loggerKey{}).(*Logger)
	return l
}

func (c *conn) opContext() context.Context { return context.WithValue(c.ctx, loggerKey{}, c.log) }

// Log sends one line at the given level (§3.3).
func (l *Logger) Log(level uint64, msg string) {
	if l == nil || level > l.verbosity.Load() {
		return
	}
	l.send(func(w *wire.Writer) { w.StderrNext(strings.TrimSuffix(msg, "\n") + "\n") })
}

// Warn sends a warning line formatted as Nix does.
func (l *Logger) Warn(msg string) { l.Log(wire.LvlWarn, "\x1b[35;1mwarning:\x1b[0m "+msg) }

// StartActivity starts an activity (§3.4) and returns its id.
func (l *Logger) StartActivity(level, typ uint64, text string, fields []wire.Field, parent uint64) uint64 {
	if l == nil {
		return 0
	}
	id := l.nextID.Add(1)
	if !l.c.v.AtLeast(20) {
		if text != "" {
			l.Log(level, text+"...")
		}
		return id
	}
	l.send(func(w *wire.Writer) {
		w.StartActivity(wire.Activity{ID: id, Level: level, Type: typ, Text: text, Fields: fields, Parent: parent})
	})
	return id
}

// StopActivity ends an activity.
func (l *Logger) StopActivity(id uint64) {
	if l != nil && l.c.v.AtLeast(20) {
		l.send(func(w *wire.Writer) { w.StopActivity(id) })
	}
}

// Result sends a result (§3.5) for an activity.
func (l *Logger) Result(id, typ uint64, fields []wire.Field) {
	if l != nil && l.c.v.AtLeast(20) {
		l.send(func(w *wire.Writer) { w.Result(id, typ, fields) })
	}
}

// send writes one message if the connection is in work; other messages are dropped,
// since the client only reads the stderr channel during an operation.
func (l *Logger) send(fn func(w *wire.Writer)) {
	c := l.c
	defer c.lockWriter()()
	if !c.inWork {
		return
	}
	fn(c.w)
	_ = c.w.Flush()
}

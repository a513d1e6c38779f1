package monitor

import "privnix/ipc/msg"

// The audit log (Config.Audit) records every privileged decision and action
// of the monitor with the client's uid and pid: connections accepted and
// refused (session.go), paths registered (handlers_upload.go, build_run.go)
// and substituted (substitute.go), signatures added, builds started and
// finished with their build user (admin.go), killed, and derivations or
// outputs refused (build*.go), GC runs and deletions (handlers_gc.go), paths
// a crash left pending removed at start (store.go), frontends killed for a
// protocol violation, configuration reloads (reload.go), admin requests
// refused, and every request policy refused (below). It is its own slog
// handler: the children's forwarded logs, rate-limited and dropped when they
// flood, never go through it.

// auditRefusal records the answers in rep that refuse req by policy, and the
// settings SetOptions ignored.
func (s *session) auditRefusal(req msg.Message, rep reply) {
	for _, m := range rep.msgs {
		switch a := m.(type) {
		case *msg.Error:
			if a.Class == msg.ClassPolicy {
				s.audit.Warn("request refused by policy", "kind", req.Kind(), "reason", a.Message)
			}
		case *msg.Warnings:
			for _, w := range a.Texts {
				s.audit.Warn("client setting ignored by policy", "kind", req.Kind(), "reason", w)
			}
		}
	}
}

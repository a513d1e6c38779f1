package monitor

import (
	"os"
	"strconv"

	"privnix/policy"
)

// connectDecision is what the monitor concluded about a new client.
type connectDecision struct {
	trusted bool
	refusal string // not empty: the frontend tells the client this and closes
	rule    string // the setting that decided, for the audit log
}

// decideConnect resolves the peer's names through the system's user database
// and asks policy whether it may connect and whether it is trusted.
func (m *Monitor) decideConnect(p *peer, snap *snapshot) connectDecision {
	pp, err := m.resolvePeer(*p)
	p.User = pp.User
	if p.User == "" {
		p.User = strconv.FormatUint(uint64(p.UID), 10)
	}
	if err != nil {
		m.log.Warn("resolving the client's user and groups failed", "client_uid", p.UID, "err", err)
	}
	allowed, trusted, d := policy.Connect(pp, snap.set, uint32(os.Geteuid()))
	if !allowed {
		return connectDecision{refusal: d.Reason, rule: d.Rule}
	}
	return connectDecision{trusted: trusted, rule: d.Rule}
}

package policy

import (
	"fmt"
	"slices"
	"strconv"

	"privnix/nix/conf"
)

// Peer is who is on the other end of a daemon connection, as the kernel
// (SO_PEERCRED) and the system's user database (NSS) say.
type Peer struct {
	UID, GID     uint32
	User         string   // name of UID; "" if it has none (then the decimal uid is used, as Nix does)
	PrimaryGroup string   // name of GID, the process's group at connect time
	Groups       []string // every group the user is a member of, resolved through NSS by the caller
}

func (p Peer) userName() string {
	if p.User == "" {
		return strconv.FormatUint(uint64(p.UID), 10)
	}
	return p.User
}

func (p Peer) groupName() string {
	if p.PrimaryGroup == "" {
		return strconv.FormatUint(uint64(p.GID), 10)
	}
	return p.PrimaryGroup
}

// Decision is a policy answer: whether something is allowed, which setting or
// rule decided, and a sentence saying why (the client's error text on refusal).
type Decision struct {
	Allow  bool
	Rule   string
	Reason string
}

func allow(rule, reason string) Decision { return Decision{true, rule, reason} }
func deny(rule, reason string) Decision  { return Decision{false, rule, reason} }

// Err returns nil for an allowing decision and a *Refusal otherwise.
func (d Decision) Err() error {
	if d.Allow {
		return nil
	}
	return &Refusal{d}
}

// Refusal is the error for a denying Decision; its text is the Reason, which is
// what the client sees.
type Refusal struct{ Decision Decision }

func (r *Refusal) Error() string { return r.Decision.Reason }

// Connect decides whether p may talk to the daemon and whether it is trusted.
// daemonUID is the uid privnixd runs as: that uid owns the store already, so a
// peer with it is trusted (the daemon's own tools).
func Connect(p Peer, s *conf.Settings, daemonUID uint32) (allowed, trusted bool, d Decision) {
	if d, ok := ownRange(p, s); !ok {
		return false, false, d
	}
	if g := s.BuildUsersGroup; g != "" && (p.groupName() == g || slices.Contains(p.Groups, g)) {
		return false, false, deny("build-users-group", fmt.Sprintf(
			"user '%s' is not allowed to connect to the Nix daemon (member of 'build-users-group' '%s'; build users must not talk to the daemon)",
			p.userName(), g))
	}
	if p.UID == daemonUID {
		return true, true, allow("daemon-uid", fmt.Sprintf("user '%s' is the user privnixd runs as", p.userName()))
	}
	if entry, ok := MatchUser(p, s.TrustedUsers); ok {
		return true, true, allow("trusted-users", fmt.Sprintf("user '%s' matches '%s' in 'trusted-users'", p.userName(), entry))
	}
	if entry, ok := MatchUser(p, s.AllowedUsers); ok {
		return true, false, allow("allowed-users", fmt.Sprintf("user '%s' matches '%s' in 'allowed-users' (not trusted)", p.userName(), entry))
	}
	return false, false, deny("allowed-users", fmt.Sprintf(
		"user '%s' is not allowed to connect to the Nix daemon (not in 'allowed-users')", p.userName()))
}

// ownRange refuses uids privnix hands to its own processes, so that a builder
// or frontend cannot ask the daemon for work.
func ownRange(p Peer, s *conf.Settings) (Decision, bool) {
	for _, r := range []struct {
		name string
		r    conf.UIDRange
	}{{"privnix-frontend-uids", s.FrontendUIDs}, {"privnix-storeproc-uids", s.StoreprocUIDs}, {"privnix-build-uids", s.BuildUIDs}} {
		if r.r.Contains(p.UID) || r.r.Contains(p.GID) {
			return deny(r.name, fmt.Sprintf(
				"user '%s' is not allowed to connect to the Nix daemon (uid %d/gid %d is in '%s' %s, which privnix reserves for its own processes)",
				p.userName(), p.UID, p.GID, r.name, r.r)), false
		}
	}
	return Decision{}, true
}

// MatchUser is nix-daemon's matchUser: an entry matches if it is "*", the
// user's name, or "@G" where G is the peer's primary group or a group the user
// is a member of. It returns the first matching entry.
func MatchUser(p Peer, list []string) (string, bool) {
	for _, e := range list {
		switch {
		case e == "*", e == p.userName():
			return e, true
		case len(e) > 1 && e[0] == '@':
			if g := e[1:]; g == p.groupName() || slices.Contains(p.Groups, g) {
				return e, true
			}
		}
	}
	return "", false
}

// ConnectionLimit decides whether p may open one more connection while it
// already has open ones.
func ConnectionLimit(p Peer, open int, s *conf.Settings) Decision {
	if open >= int(s.MaxConnectionsPerUser) {
		return deny("privnix-max-connections-per-user", fmt.Sprintf(
			"user '%s' already has %d connections to the Nix daemon (limit set by 'privnix-max-connections-per-user')",
			p.userName(), open))
	}
	return allow("privnix-max-connections-per-user", "below the per-user connection limit")
}

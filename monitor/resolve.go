package monitor

import (
	"privnix/internal/userdb"
	"privnix/policy"
)

// users resolves uids through the system's NSS (LDAP and SSSD included), with
// a cache and a deadline so that a slow directory cannot stall accepts.
var users = userdb.New(userdb.Options{})

// resolvePeer names the peer's uid, primary gid and groups. A uid without a
// passwd entry keeps an empty name (policy then uses the number, as Nix does).
func (m *Monitor) resolvePeer(p peer) (policy.Peer, error) {
	pp := policy.Peer{UID: p.UID, GID: p.GID}
	id, err := users.LookupUID(p.UID)
	if err != nil {
		return pp, err
	}
	pp.User = id.User
	pp.Groups = id.Groups
	if g, err := users.GroupName(p.GID); err == nil {
		pp.PrimaryGroup = g
	}
	return pp, nil
}

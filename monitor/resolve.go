package monitor

import (
	"os/user"
	"strconv"

	"privnix/policy"
)

// resolvePeer names the peer's uid, primary gid and groups. A uid without a
// passwd entry keeps its number as its name, as Nix does.
func (m *Monitor) resolvePeer(p peer) (policy.Peer, error) {
	pp := policy.Peer{UID: p.UID, GID: p.GID}
	u, err := user.LookupId(strconv.FormatUint(uint64(p.UID), 10))
	if err != nil {
		return pp, err
	}
	pp.User = u.Username
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(p.GID), 10)); err == nil {
		pp.PrimaryGroup = g.Name
	}
	gids, err := u.GroupIds()
	if err != nil {
		return pp, err
	}
	for _, gid := range gids {
		if g, err := user.LookupGroupId(gid); err == nil {
			pp.Groups = append(pp.Groups, g.Name)
		}
	}
	return pp, nil
}

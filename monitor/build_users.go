package monitor

import (
	"fmt"
	"os"
	"sync"
)

// Build users (nix-protocol.md 6.8): the members of build-users-group, each
// a member of that group only; or, when the setting is empty, uids from
// privnix-build-uids that have no passwd entry (their gid is their uid). A
// build takes a user for its whole run and gives it back; when every user is
// busy the build waits. One user never runs two builds.
type buildUsers struct {
	m    *Monitor
	once sync.Once
	err  error
	free chan buildUser
}

type buildUser struct {
	uid, gid uint32
	name     string
}

// maxRangeBuildUsers bounds the users taken from privnix-build-uids.
const maxRangeBuildUsers = 256

func newBuildUsers(m *Monitor) *buildUsers { return &buildUsers{m: m} }

// load reads the pool once, at the first build (the group may be created
// after privnixd starts; a failure is reported to every build).
func (b *buildUsers) load() {
	set := b.m.cfg.Settings
	if !b.m.root {
		b.err = fmt.Errorf("privnixd does not run as root: builds are not supported yet")
		return
	}
	var pool []buildUser
	if g := set.BuildUsersGroup; g != "" {
		gid, err := users.LookupGroup(g)
		if err != nil {
			b.err = fmt.Errorf("the group '%s' specified in 'build-users-group' does not exist", g)
			return
		}
		members, err := users.GroupMembers(g)
		if err != nil {
			b.err = fmt.Errorf("reading the members of build users group '%s': %v", g, err)
			return
		}
		if len(members) == 0 {
			b.err = fmt.Errorf("the build users group '%s' has no members", g)
			return
		}
		for _, name := range members {
			id, err := users.LookupUser(name)
			if err != nil {
				b.err = fmt.Errorf("the user '%s' in the group '%s' does not exist", name, g)
				return
			}
			if id.UID == 0 || id.UID == uint32(os.Getuid()) {
				b.err = fmt.Errorf("the Nix user should not be a member of '%s'", g)
				return
			}
			for i, other := range id.GIDs {
				if other != gid {
					b.err = fmt.Errorf("build user '%s' is also a member of group '%s': build users must be members of '%s' only", name, id.Groups[i], g)
					return
				}
			}
			pool = append(pool, buildUser{uid: id.UID, gid: gid, name: name})
		}
	} else {
		r := set.BuildUIDs
		for uid := r.Lo; uid <= r.Hi && len(pool) < maxRangeBuildUsers; uid++ {
			pool = append(pool, buildUser{uid: uid, gid: uid, name: "nixbld"})
		}
		if len(pool) == 0 {
			b.err = fmt.Errorf("privnix-build-uids is empty: no build users")
			return
		}
	}
	b.free = make(chan buildUser, len(pool))
	for _, u := range pool {
		b.free <- u
	}
}

// get takes a free build user, waiting while all are busy.
func (b *buildUsers) get() (buildUser, error) {
	b.once.Do(b.load)
	if b.err != nil {
		return buildUser{}, b.err
	}
	return <-b.free, nil
}

func (b *buildUsers) put(u buildUser) { b.free <- u }

package monitor

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
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
	set := b.m.current().set
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

// get takes a free build user, waiting while all are busy, and makes sure
// no process of it runs.
func (b *buildUsers) get() (buildUser, error) {
	b.once.Do(b.load)
	if b.err != nil {
		return buildUser{}, b.err
	}
	u := <-b.free
	if n, err := killUser(u.uid); err != nil || n > 0 {
		b.m.log.Warn("killed processes of a build user before its build", "uid", u.uid, "killed", n, "err", err)
		if err != nil {
			b.free <- u
			return buildUser{}, fmt.Errorf("build user %d cannot be used: %v", u.uid, err)
		}
	}
	return u, nil
}

// put gives u back once no process of it runs.
func (b *buildUsers) put(u buildUser) {
	if n, err := killUser(u.uid); err != nil || n > 0 {
		b.m.log.Warn("killed processes a build left behind", "uid", u.uid, "killed", n, "err", err)
	}
	b.free <- u
}

// killUser kills every process whose real, effective or saved uid is uid,
// until none is left (nix-protocol.md 6.8: before and after each build). A
// build's processes all die with its PID namespace; this is the check that
// nothing else runs as a build user. It returns how many it killed.
func killUser(uid uint32) (int, error) {
	killed := 0
	for round := 0; round < 100; round++ {
		pids, err := processesOf(uid)
		if err != nil || len(pids) == 0 {
			return killed, err
		}
		for _, pid := range pids {
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue // gone already
			}
			// The pidfd names this process for good: check it is still uid's.
			if again, _ := processesOf(uid); slices.Contains(again, pid) {
				if unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil {
					killed++
				}
			}
			unix.Close(fd)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return killed, fmt.Errorf("processes of uid %d survive SIGKILL", uid)
}

// processesOf lists the processes one of whose uids is uid.
func processesOf(uid uint32) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	want := strconv.FormatUint(uint64(uid), 10)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(line, "Uid:"); ok {
				if slices.Contains(strings.Fields(f)[:3], want) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids, nil
}

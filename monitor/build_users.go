package monitor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Build users (nix-protocol.md 6.8): the members of build-users-group, each
// a member of that group only; or, when the setting is empty, uids from
// privnix-build-uids that have no passwd entry (their gid is their uid). A
// build takes a user for its whole run and gives it back; when every user is
// busy the build waits. One user never runs two builds. The pool is read at
// the first build and again at the first build after a reload (SIGHUP): a
// user still busy with a build started under the old pool is not handed out
// until that build gives it back.
type buildUsers struct {
	m      *Monitor
	mu     sync.Mutex
	wake   *sync.Cond // broadcast when a user is given back or the pool is to be reread
	loaded bool       // pool and err are read for the current configuration; guarded by mu
	err    error      // guarded by mu
	pool   []buildUser
	busy   map[uint32]bool // uids running a build, whichever pool they came from; guarded by mu
	used   map[uint32]bool // uids that ran a build since privnixd started; guarded by mu
}

type buildUser struct {
	uid, gid uint32
	name     string
	// shared: privnixd's own uid (it does not run as root): the build runs
	// in a user namespace as sandboxUID:sandboxGID mapped to it; no killUser
	// (that would kill privnixd), the PID namespace ends the build's processes.
	shared bool
}

// The ids a build sees in its user namespace when privnixd is not root
// (Nix's sandbox-build uid and gid).
const (
	sandboxUID = 1000
	sandboxGID = 100
)

// maxRangeBuildUsers bounds the users taken from privnix-build-uids.
const maxRangeBuildUsers = 256

func newBuildUsers(m *Monitor) *buildUsers {
	b := &buildUsers{m: m, busy: map[uint32]bool{}, used: map[uint32]bool{}}
	b.wake = sync.NewCond(&b.mu)
	return b
}

// load reads the pool from the current configuration (the group may be
// created after privnixd starts; a failure is reported to every build until
// the next reload). Called with mu held.
func (b *buildUsers) load() {
	b.pool, b.err = nil, nil
	set := b.m.current().set
	if !b.m.root {
		// As nix-daemon without root: builds run as privnixd's own uid,
		// one at a time, in a user namespace of their own.
		b.pool = []buildUser{{uid: uint32(os.Getuid()), gid: uint32(os.Getgid()), name: "nixbld", shared: true}}
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
	b.pool = pool
}

// errAbandoned: the request gave up waiting.
var errAbandoned = errors.New("the build request was abandoned")

// get takes a free build user, waiting while all are busy (until abandon
// is closed: errAbandoned), and makes sure no process of it runs. A user
// goes back to the pool only after put (below), so what get has to check
// is a user's first build since privnixd started: its processes are looked
// up in /proc and killed, and waited for (killUser).
func (b *buildUsers) get(abandon <-chan struct{}) (buildUser, error) {
	u, err := b.take(abandon)
	if err != nil || u.shared {
		return u, err
	}
	b.mu.Lock()
	first := !b.used[u.uid]
	b.mu.Unlock()
	if !first {
		return u, nil
	}
	if n, err := killUser(u.uid); err != nil || n > 0 {
		b.m.log.Warn("killed processes of a build user before its build", "uid", u.uid, "killed", n, "err", err)
		if err != nil {
			b.release(u)
			return buildUser{}, fmt.Errorf("build user %d cannot be used: %v", u.uid, err)
		}
	}
	b.mu.Lock()
	b.used[u.uid] = true
	b.mu.Unlock()
	return u, nil
}

// take marks a user of the current pool busy, waiting while all are
// (until abandon is closed).
func (b *buildUsers) take(abandon <-chan struct{}) (buildUser, error) {
	waiting := make(chan struct{})
	defer close(waiting)
	go func() {
		select {
		case <-abandon:
			b.mu.Lock()
			b.wake.Broadcast()
			b.mu.Unlock()
		case <-waiting:
		}
	}()
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		select {
		case <-abandon:
			return buildUser{}, errAbandoned
		default:
		}
		if !b.loaded {
			b.load()
			b.loaded = true
		}
		if b.err != nil {
			return buildUser{}, b.err
		}
		for _, u := range b.pool {
			if !b.busy[u.uid] {
				b.busy[u.uid] = true
				return u, nil
			}
		}
		b.wake.Wait()
	}
}

// put gives u back. Its caller has reaped the PID 1 of the build namespace
// u ran in (the kernel kills and reaps every process of a PID namespace
// before its PID 1's exit is reported): no process privnixd started as u
// is left. The last resort for any other (DESIGN, sealing step 1) is
// kill(-1) as u (killAllAs), off the build's critical path; when that
// fails, /proc is looked through (killUser).
func (b *buildUsers) put(u buildUser) {
	if u.shared {
		b.release(u)
		return
	}
	bin, ok := b.m.buildSpawner.bins[roleBuild]
	err := fmt.Errorf("privnix-build is not installed")
	if ok {
		err = killAllAs(bin, u.uid, u.gid)
	}
	if err != nil {
		b.m.log.Warn("kill(-1) as a build user failed; looking through /proc", "uid", u.uid, "err", err)
		if n, err := killUser(u.uid); err != nil || n > 0 {
			b.m.log.Warn("killed processes a build left behind", "uid", u.uid, "killed", n, "err", err)
		}
	}
	b.release(u)
}

func (b *buildUsers) release(u buildUser) {
	b.mu.Lock()
	delete(b.busy, u.uid)
	b.wake.Broadcast()
	b.mu.Unlock()
}

// reread makes the next build read the pool again (after a reload).
func (b *buildUsers) reread() {
	b.mu.Lock()
	b.loaded = false
	b.wake.Broadcast()
	b.mu.Unlock()
}

// killAllAs is kill(-1, SIGKILL) as uid (every process whose real or saved
// uid is uid), sent by privnix-build started as uid:gid without groups under
// the name privnix-kill-user (cmd/privnix-build refuses it as root or with
// a capability), and waited for. A process of its own, not a thread of
// privnixd that takes the uid: such a thread could be signalled or traced
// by the very processes it is about to kill. The signal is sent, not waited
// for: a process with SIGKILL pending never returns to user space.
func killAllAs(bin *os.File, uid, gid uint32) error {
	if uid == 0 {
		return fmt.Errorf("refusing kill(-1) as root")
	}
	cmd := &exec.Cmd{
		Path: fmt.Sprintf("/proc/self/fd/%d", bin.Fd()),
		Args: []string{"privnix-kill-user"},
		Env:  []string{},
		Dir:  "/",
		SysProcAttr: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
			Setsid:     true,
		},
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kill(-1) as uid %d: %v: %s", uid, err, strings.TrimSpace(string(out)))
	}
	return nil
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

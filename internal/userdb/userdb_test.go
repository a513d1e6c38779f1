package userdb

import (
	"errors"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// id runs the system's id(1), an oracle independent of this package.
func id(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("id", args...).Output()
	if err != nil {
		t.Fatalf("id %v: %v (run scripts/setup-test-host.sh to create the test users)", args, err)
	}
	return strings.TrimSpace(string(out))
}

func idNum(t *testing.T, args ...string) uint32 {
	n, err := strconv.ParseUint(id(t, args...), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

func TestRealUsers(t *testing.T) {
	db := New(Options{})
	for _, name := range []string{"privnix-alice", "privnix-bob", "privnix-carol", "pnxbld3", "root"} {
		t.Run(name, func(t *testing.T) {
			uid, gid := idNum(t, "-u", name), idNum(t, "-g", name)
			got, err := db.LookupUID(uid)
			if err != nil {
				t.Fatal(err)
			}
			if got.User != name || got.UID != uid || got.GID != gid {
				t.Errorf("LookupUID(%d) = %+v; want user %s gid %d", uid, got, name, gid)
			}
			if want := strings.Fields(id(t, "-Gn", name)); !sameSet(got.Groups, want) || len(got.GIDs) != len(want) {
				t.Errorf("groups of %s = %v (%v), want %v", name, got.Groups, got.GIDs, want)
			}
			byName, err := db.LookupUser(name)
			if err != nil || !reflect.DeepEqual(byName, got) {
				t.Errorf("LookupUser(%s) = %+v, %v; want %+v", name, byName, err, got)
			}
			user, primary, groups, err := db.Peer(uid, gid)
			if err != nil || user != name || primary != id(t, "-gn", name) || !sameSet(groups, got.Groups) {
				t.Errorf("Peer(%d, %d) = %q %q %v %v", uid, gid, user, primary, groups, err)
			}
		})
	}
}

func TestRealGroups(t *testing.T) {
	db := New(Options{})
	bld := []string{"pnxbld1", "pnxbld2", "pnxbld3", "pnxbld4", "pnxbld5", "pnxbld6", "pnxbld7", "pnxbld8"}
	tests := []struct {
		group   string
		members []string
	}{
		{"privnix-test-bld", bld},
		{"privnix-test-trusted", []string{"privnix-bob"}},
		{"privnix-test-users", nil}, // alice and bob have it as primary group only
	}
	for _, tt := range tests {
		m, err := db.GroupMembers(tt.group)
		if err != nil || !reflect.DeepEqual(m, tt.members) {
			t.Errorf("GroupMembers(%s) = %q, %v; want %q", tt.group, m, err, tt.members)
		}
		out, err := exec.Command("getent", "group", tt.group).Output()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := strconv.ParseUint(strings.Split(string(out), ":")[2], 10, 32)
		if gid, err := db.LookupGroup(tt.group); err != nil || gid != uint32(want) {
			t.Errorf("LookupGroup(%s) = %d, %v; want %d", tt.group, gid, err, want)
		}
		if name, err := db.GroupName(uint32(want)); err != nil || name != tt.group {
			t.Errorf("GroupName(%d) = %q, %v", want, name, err)
		}
	}
	// Bob's process running with his supplementary group as gid.
	bob := idNum(t, "-u", "privnix-bob")
	trusted, _ := db.LookupGroup("privnix-test-trusted")
	if _, primary, _, err := db.Peer(bob, trusted); err != nil || primary != "privnix-test-trusted" {
		t.Errorf("Peer(bob, %d) primary group = %q, %v", trusted, primary, err)
	}
}

func TestNotFound(t *testing.T) {
	db := New(Options{})
	if _, err := db.LookupUser("privnix-no-such-user"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupUser(missing) error = %v, want ErrNotFound", err)
	}
	if _, err := db.LookupGroup("privnix-no-such-group"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupGroup(missing) error = %v", err)
	}
	if _, err := db.GroupMembers("privnix-no-such-group"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GroupMembers(missing) error = %v", err)
	}
	if got, err := db.LookupUID(4000000000); err != nil || got.User != "" || got.UID != 4000000000 {
		t.Errorf("LookupUID(unused) = %+v, %v; want empty user, no error", got, err)
	}
	if name, err := db.GroupName(4000000001); err != nil || name != "4000000001" {
		t.Errorf("GroupName(unused) = %q, %v", name, err)
	}
}

// fakeDB counts lookups and can be made slow or failing.
func fakeDB(o Options, delay time.Duration, fail *atomic.Bool) (*DB, *atomic.Int32, *time.Time) {
	db := New(o)
	var calls atomic.Int32
	clock := time.Unix(1000, 0)
	db.now = func() time.Time { return clock }
	db.userByID = func(uid uint32) (Identity, bool, error) {
		calls.Add(1)
		time.Sleep(delay)
		if fail != nil && fail.Load() {
			return Identity{}, false, errors.New("nss down")
		}
		if uid == 7 {
			return Identity{}, false, nil
		}
		return Identity{UID: uid, User: "u" + strconv.Itoa(int(uid))}, true, nil
	}
	return db, &calls, &clock
}

func TestCache(t *testing.T) {
	var fail atomic.Bool
	db, calls, clock := fakeDB(Options{TTL: time.Minute, NegativeTTL: time.Second}, 0, &fail)
	steps := []struct {
		uid       uint32
		advance   time.Duration
		fail      bool
		wantCalls int32
		wantUser  string
		wantErr   bool
	}{
		{1, 0, false, 1, "u1", false},
		{1, 30 * time.Second, false, 1, "u1", false}, // cached
		{1, 31 * time.Second, false, 2, "u1", false}, // expired
		{7, 0, false, 3, "", false},                  // not found
		{7, 500 * time.Millisecond, false, 3, "", false},
		{7, time.Second, false, 4, "", false}, // negative entry expired
		{2, 0, true, 5, "", true},             // errors are not cached
		{2, 0, false, 6, "u2", false},
	}
	for i, s := range steps {
		*clock = clock.Add(s.advance)
		fail.Store(s.fail)
		got, err := db.LookupUID(s.uid)
		if calls.Load() != s.wantCalls || got.User != s.wantUser || (err != nil) != s.wantErr {
			t.Errorf("step %d: %+v, %v after %d calls; want user %q err %v after %d", i, got, err, calls.Load(), s.wantUser, s.wantErr, s.wantCalls)
		}
	}
}

func TestDeadline(t *testing.T) {
	db, _, _ := fakeDB(Options{Timeout: 50 * time.Millisecond, MaxInFlight: 1}, 0, nil)
	db.userByID = func(uid uint32) (Identity, bool, error) {
		if uid == 1 {
			time.Sleep(400 * time.Millisecond)
		}
		return Identity{UID: uid, User: "x"}, true, nil
	}
	start := time.Now()
	_, err := db.LookupUID(1)
	if !errors.Is(err, ErrTimeout) || time.Since(start) > 300*time.Millisecond {
		t.Errorf("slow lookup: error %v after %v, want ErrTimeout after ~50ms", err, time.Since(start))
	}
	// The stuck lookup still holds the only slot.
	if _, err := db.LookupUID(2); !errors.Is(err, ErrBusy) {
		t.Errorf("second lookup while one is stuck: error %v, want ErrBusy", err)
	}
	time.Sleep(450 * time.Millisecond)
	if got, err := db.LookupUID(3); err != nil || got.User != "x" {
		t.Errorf("after the stuck lookup ended: %+v, %v", got, err)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

func TestCacheBound(t *testing.T) {
	db, calls, _ := fakeDB(Options{}, 0, nil)
	for uid := uint32(100); uid < 100+maxCacheEntries+10; uid++ {
		if _, err := db.LookupUID(uid); err != nil {
			t.Fatal(err)
		}
	}
	db.mu.Lock()
	n := len(db.cache)
	db.mu.Unlock()
	if n > maxCacheEntries || int(calls.Load()) != maxCacheEntries+10 {
		t.Errorf("cache holds %d entries after %d lookups; bound is %d", n, calls.Load(), maxCacheEntries)
	}
}

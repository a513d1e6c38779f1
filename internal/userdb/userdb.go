// Package userdb resolves users and groups through the system's NSS, with a short-lived cache and a deadline on every lookup.
package userdb

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Identity is what NSS says about a user.
type Identity struct {
	UID    uint32
	User   string   // "" if NSS has no user with this uid
	GID    uint32   // primary gid from the passwd entry
	Groups []string // names of every group the user is in, primary included (getgrouplist)
	GIDs   []uint32 // the same groups' ids, in the same order
	Home   string
}

// Errors a lookup can fail with besides an NSS error.
var (
	ErrNotFound = errors.New("not found in the user database")
	ErrTimeout  = errors.New("user database lookup timed out")
	ErrBusy     = errors.New("too many user database lookups in flight")
)

// maxCacheEntries bounds the cache; it is emptied when full.
const maxCacheEntries = 4096

// Options tunes a DB; zero fields take the defaults below.
type Options struct {
	TTL         time.Duration // how long an answer is reused (default 30 s)
	NegativeTTL time.Duration // how long "no such user/group" is reused (default 5 s)
	Timeout     time.Duration // a lookup slower than this fails (default 2 s)
	MaxInFlight int           // lookups running at once, stuck ones included (default 16)
}

// DB answers user and group questions. It is safe for concurrent use.
type DB struct {
	opt Options
	sem chan struct{}
	now func() time.Time

	// The NSS calls; tests replace them (…ForTest).
	userByID   func(uint32) (Identity, bool, error)
	userByName func(string) (Identity, bool, error)
	groupByID  func(string) (string, error)
	groupByNam func(string) (uint32, []string, bool, error)

	mu    sync.Mutex // guards cache
	cache map[string]entry
}

type entry struct {
	v       any // nil means "not found"
	expires time.Time
}

// New returns a DB that asks the system's NSS.
func New(o Options) *DB {
	if o.TTL == 0 {
		o.TTL = 30 * time.Second
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = 5 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 16
	}
	return &DB{opt: o, sem: make(chan struct{}, o.MaxInFlight), now: time.Now, cache: map[string]entry{},
		userByID: nssUser, userByName: nssUserByName, groupByID: nssGroupName, groupByNam: nssGroup}
}

type group struct {
	gid     uint32
	members []string
}

// LookupUID resolves a uid. A uid without a passwd entry gives an Identity
// with an empty User and no error, as nix-daemon then uses the number.
func (db *DB) LookupUID(uid uint32) (Identity, error) {
	v, err := db.do("uid:"+strconv.FormatUint(uint64(uid), 10), func() (any, error) {
		id, found, err := db.userByID(uid)
		if !found || err != nil {
			return nil, err
		}
		return id, nil
	})
	if err != nil {
		return Identity{}, err
	}
	if v == nil {
		return Identity{UID: uid}, nil
	}
	return v.(Identity), nil
}

// LookupUser resolves a user name; ErrNotFound if there is no such user.
func (db *DB) LookupUser(name string) (Identity, error) {
	v, err := db.do("user:"+name, func() (any, error) {
		id, found, err := db.userByName(name)
		if !found || err != nil {
			return nil, err
		}
		return id, nil
	})
	if err == nil && v == nil {
		err = fmt.Errorf("user '%s': %w", name, ErrNotFound)
	}
	if err != nil {
		return Identity{}, err
	}
	return v.(Identity), nil
}

// GroupName returns the name of a gid, or the decimal gid if it has none.
func (db *DB) GroupName(gid uint32) (string, error) {
	g := strconv.FormatUint(uint64(gid), 10)
	v, err := db.do("gid:"+g, func() (any, error) { return db.groupByID(g) })
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (db *DB) group(name string) (group, error) {
	v, err := db.do("group:"+name, func() (any, error) {
		gid, members, found, err := db.groupByNam(name)
		if !found || err != nil {
			return nil, err
		}
		return group{gid, members}, nil
	})
	if err == nil && v == nil {
		err = fmt.Errorf("group '%s': %w", name, ErrNotFound)
	}
	if err != nil {
		return group{}, err
	}
	return v.(group), nil
}

// LookupGroup returns the gid of a group; ErrNotFound if there is none.
func (db *DB) LookupGroup(name string) (uint32, error) {
	g, err := db.group(name)
	return g.gid, err
}

// GroupMembers returns the users a group lists as members, in listed order
// (users whose primary group it is are not listed unless named there too).
func (db *DB) GroupMembers(name string) ([]string, error) {
	g, err := db.group(name)
	return append([]string(nil), g.members...), err
}

// Peer resolves a connecting process's uid and gid into what policy.Peer
// needs: the user's name ("" if none), the name of the process's gid, and
// every group the user is a member of.
func (db *DB) Peer(uid, gid uint32) (user, primaryGroup string, groups []string, err error) {
	id, err := db.LookupUID(uid)
	if err != nil {
		return "", "", nil, err
	}
	primaryGroup, err = db.GroupName(gid)
	if err != nil {
		return "", "", nil, err
	}
	return id.User, primaryGroup, append([]string(nil), id.Groups...), nil
}

// Forget drops every cached answer (privnixd's SIGHUP: the admin may have
// changed users or groups).
func (db *DB) Forget() {
	db.mu.Lock()
	db.cache = map[string]entry{}
	db.mu.Unlock()
}

// do answers key from the cache or runs f with the deadline, caching answers
// (a nil value means "not found") but not errors.
func (db *DB) do(key string, f func() (any, error)) (any, error) {
	now := db.now()
	db.mu.Lock()
	e, ok := db.cache[key]
	db.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.v, nil
	}
	select {
	case db.sem <- struct{}{}:
	default:
		return nil, fmt.Errorf("looking up %s: %w (%d)", key, ErrBusy, db.opt.MaxInFlight)
	}
	type result struct {
		v   any
		err error
	}
	ch := make(chan result, 1)
	go func() { // may outlive the deadline: NSS calls cannot be cancelled
		defer func() { <-db.sem }()
		v, err := f()
		ch <- result{v, err}
	}()
	timer := time.NewTimer(db.opt.Timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		ttl := db.opt.TTL
		if r.v == nil {
			ttl = db.opt.NegativeTTL
		}
		db.mu.Lock()
		if len(db.cache) >= maxCacheEntries { // crude bound: start over rather than track age
			db.cache = map[string]entry{}
		}
		db.cache[key] = entry{r.v, db.now().Add(ttl)}
		db.mu.Unlock()
		return r.v, nil
	case <-timer.C:
		return nil, fmt.Errorf("looking up %s: %w after %v", key, ErrTimeout, db.opt.Timeout)
	}
}

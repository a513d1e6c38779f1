package admin

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"privnix/internal/userdb"
)

// account is a user as the system's NSS sees it (LDAP and SSSD included).
type account struct {
	Name         string
	UID, GID     uint32
	Home, Shell  string
	Groups       []string // every group, primary included
	PrimaryGroup string
}

// accounts answers user and group questions through NSS, uncached, so that a
// plan sees the changes the previous one made.
type accounts struct{ db *userdb.DB }

func newAccounts() accounts {
	return accounts{userdb.New(userdb.Options{TTL: 1, NegativeTTL: 1})}
}

// user looks a user up by name; ok is false if there is none. The shell is
// not in os/user's answer: it comes from `getent passwd`, which asks NSS too.
func (a accounts) user(name string) (account, bool, error) {
	id, err := a.db.LookupUser(name)
	if errors.Is(err, userdb.ErrNotFound) {
		return account{}, false, nil
	}
	if err != nil {
		return account{}, false, err
	}
	acc := account{Name: name, UID: id.UID, GID: id.GID, Home: id.Home, Groups: id.Groups}
	acc.PrimaryGroup, _ = a.db.GroupName(id.GID)
	out, err := exec.Command("getent", "passwd", name).Output()
	if err != nil {
		return account{}, false, fmt.Errorf("getent passwd %s: %w", name, err)
	}
	f := strings.Split(strings.TrimSpace(string(bytes.SplitN(out, []byte("\n"), 2)[0])), ":")
	if len(f) != 7 {
		return account{}, false, fmt.Errorf("getent passwd %s: %d fields, want 7", name, len(f))
	}
	acc.Shell = f[6]
	return acc, true, nil
}

// group returns a group's gid and listed members; ok is false if there is none.
func (a accounts) group(name string) (gid uint32, members []string, ok bool, err error) {
	gid, err = a.db.LookupGroup(name)
	if errors.Is(err, userdb.ErrNotFound) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, err
	}
	members, err = a.db.GroupMembers(name)
	return gid, members, err == nil, err
}

// usersWithPrimaryGID lists the users of /etc/passwd whose primary gid is
// gid: they are in the group without being listed in it. (Users only LDAP
// knows are not enumerated.)
func usersWithPrimaryGID(passwd []byte, gid uint32) []string {
	var out []string
	for line := range strings.Lines(string(passwd)) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) < 4 {
			continue
		}
		if g, err := strconv.ParseUint(f[3], 10, 32); err == nil && uint32(g) == gid {
			out = append(out, f[0])
		}
	}
	return out
}

// nologinShells are the shells that refuse a login.
var nologinShells = []string{"/usr/sbin/nologin", "/sbin/nologin", "/usr/bin/nologin", "/bin/nologin", "/bin/false", "/usr/bin/false"}

// NoHomes are the homes a build user may have: none that exists for it.
var noHomes = []string{"/var/empty", "/nonexistent", "/var/lib/empty", "/dev/null", "/"}

func isNologin(shell string) bool { return slices.Contains(nologinShells, filepath.Clean(shell)) }
func isNoHome(home string) bool   { return slices.Contains(noHomes, filepath.Clean(home)) }

// nologin is the nologin program of this system, for new build users.
func nologin() string {
	for _, p := range nologinShells[:4] {
		if ok, _ := isExecutable(p); ok {
			return p
		}
	}
	return "/bin/false"
}

package userdb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Use is a range of ids some entry of the system's files claims.
type Use struct {
	Lo, Hi uint32
	What   string // e.g. "uid of 'alice' (/etc/passwd:12)"
}

// InUse lists the uids and gids the system's files hand out.
type InUse struct{ UIDs, GIDs []Use }

// maxLine bounds one line of an id file.
const maxLine = 64 << 10

// ParsePasswd reads passwd(5) lines and returns the uid and gid of each user.
func ParsePasswd(r io.Reader, file string) (uids, gids []Use, err error) {
	err = eachLine(r, file, func(where string, f []string) error {
		if len(f) < 4 {
			return fmt.Errorf("%s: passwd entry has %d fields, want 7", where, len(f))
		}
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%s: passwd entry '%s' has a bad uid or gid", where, f[0])
		}
		uids = append(uids, Use{uid, uid, fmt.Sprintf("uid of '%s' (%s)", f[0], where)})
		gids = append(gids, Use{gid, gid, fmt.Sprintf("primary gid of '%s' (%s)", f[0], where)})
		return nil
	})
	return uids, gids, err
}

// ParseGroup reads group(5) lines and returns each group's gid.
func ParseGroup(r io.Reader, file string) (gids []Use, err error) {
	err = eachLine(r, file, func(where string, f []string) error {
		if len(f) < 3 {
			return fmt.Errorf("%s: group entry has %d fields, want 4", where, len(f))
		}
		gid, err := parseID(f[2])
		if err != nil {
			return fmt.Errorf("%s: group entry '%s' has a bad gid", where, f[0])
		}
		gids = append(gids, Use{gid, gid, fmt.Sprintf("gid of group '%s' (%s)", f[0], where)})
		return nil
	})
	return gids, err
}

// ParseSubID reads subuid(5)/subgid(5) lines ("owner:start:count").
func ParseSubID(r io.Reader, file string) (ranges []Use, err error) {
	err = eachLine(r, file, func(where string, f []string) error {
		if len(f) != 3 {
			return fmt.Errorf("%s: subordinate id entry has %d fields, want 3", where, len(f))
		}
		start, err1 := strconv.ParseUint(f[1], 10, 64)
		count, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || start > math.MaxUint32 {
			return fmt.Errorf("%s: subordinate id entry of '%s' has a bad start or count", where, f[0])
		}
		if count == 0 {
			return nil
		}
		hi := min(start+min(count, math.MaxUint32)-1, math.MaxUint32)
		ranges = append(ranges, Use{uint32(start), uint32(hi), fmt.Sprintf("subordinate ids of '%s' (%s)", f[0], where)})
		return nil
	})
	return ranges, err
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// eachLine calls f with the ':'-separated fields of every line that is not
// empty, a comment or a NIS compat entry ("+…", "-…").
func eachLine(r io.Reader, file string, f func(where string, fields []string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		if err := f(fmt.Sprintf("%s:%d", file, n), strings.Split(line, ":")); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	return nil
}

// ReadInUse reads etc/passwd, etc/group, etc/subuid and etc/subgid beneath
// root ("/" for the system). Missing subuid/subgid files mean no ranges.
func ReadInUse(root string) (InUse, error) {
	var u InUse
	read := func(name string, optional bool, parse func(io.Reader, string) error) error {
		path := filepath.Join(root, "etc", name)
		f, err := os.Open(path)
		if optional && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		return parse(f, path)
	}
	err := errors.Join(
		read("passwd", false, func(r io.Reader, p string) error {
			uids, gids, err := ParsePasswd(r, p)
			u.UIDs, u.GIDs = append(u.UIDs, uids...), append(u.GIDs, gids...)
			return err
		}),
		read("group", false, func(r io.Reader, p string) error {
			gids, err := ParseGroup(r, p)
			u.GIDs = append(u.GIDs, gids...)
			return err
		}),
		read("subuid", true, func(r io.Reader, p string) error {
			uids, err := ParseSubID(r, p)
			u.UIDs = append(u.UIDs, uids...)
			return err
		}),
		read("subgid", true, func(r io.Reader, p string) error {
			gids, err := ParseSubID(r, p)
			u.GIDs = append(u.GIDs, gids...)
			return err
		}))
	return u, err
}

// UIDsAndGIDsInUse reads the system's /etc/passwd, /etc/group, /etc/subuid and /etc/subgid.
func UIDsAndGIDsInUse() (InUse, error) { return ReadInUse("/") }

// CheckFree returns an error naming the first entry that uses an id in
// [lo, hi] as a uid or as a gid (privnix uses each id as both).
func (u InUse) CheckFree(lo, hi uint32) error {
	if lo > hi {
		return fmt.Errorf("id range %d-%d is empty", lo, hi)
	}
	for _, l := range [][]Use{u.UIDs, u.GIDs} {
		for _, e := range l {
			if e.Lo <= hi && lo <= e.Hi {
				return fmt.Errorf("id range %d-%d is not free: %d-%d is the %s", lo, hi, e.Lo, e.Hi, e.What)
			}
		}
	}
	return nil
}

// CheckRangeFree checks that no uid or gid in [lo, hi] appears in the system's
// passwd, group, subuid or subgid files. Users only NSS knows (LDAP, SSSD) are
// not enumerated; pick ranges far from their ids.
func CheckRangeFree(lo, hi uint32) error {
	u, err := UIDsAndGIDsInUse()
	if err != nil {
		return fmt.Errorf("cannot check that ids %d-%d are free: %w", lo, hi, err)
	}
	return u.CheckFree(lo, hi)
}

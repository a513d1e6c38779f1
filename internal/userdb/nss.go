//go:build cgo && !osusergo

package userdb

/*
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"syscall"
	"unsafe"
)

// maxGroupBuf bounds the buffer getgrnam_r may ask for (a group with very many members).
const maxGroupBuf = 16 << 20

// nssUser resolves a uid with getpwuid_r, its groups with getgrouplist and
// the groups' names with getgrgid_r. found is false if NSS has no such user.
func nssUser(uid uint32) (id Identity, found bool, err error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	var unknown user.UnknownUserIdError
	if errors.As(err, &unknown) {
		return Identity{UID: uid}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("looking up uid %d: %w", uid, err)
	}
	return fromUser(u)
}

func nssUserByName(name string) (Identity, bool, error) {
	u, err := user.Lookup(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("looking up user '%s': %w", name, err)
	}
	return fromUser(u)
}

func fromUser(u *user.User) (Identity, bool, error) {
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return Identity{}, false, fmt.Errorf("user '%s' has a non-numeric uid '%s' or gid '%s'", u.Username, u.Uid, u.Gid)
	}
	id := Identity{UID: uint32(uid), User: u.Username, GID: uint32(gid), Home: u.HomeDir}
	gids, err := u.GroupIds()
	if err != nil {
		return Identity{}, false, fmt.Errorf("listing the groups of user '%s': %w", u.Username, err)
	}
	for _, g := range gids {
		name, err := nssGroupName(g)
		if err != nil {
			return Identity{}, false, fmt.Errorf("groups of user '%s': %w", u.Username, err)
		}
		n, _ := strconv.ParseUint(g, 10, 32)
		id.GIDs = append(id.GIDs, uint32(n))
		id.Groups = append(id.Groups, name)
	}
	return id, true, nil
}

// nssGroupName returns a gid's name, or the decimal gid if NSS has none (as Nix does).
func nssGroupName(gid string) (string, error) {
	g, err := user.LookupGroupId(gid)
	var unknown user.UnknownGroupIdError
	if errors.As(err, &unknown) {
		return gid, nil
	}
	if err != nil {
		return "", fmt.Errorf("looking up gid %s: %w", gid, err)
	}
	return g.Name, nil
}

// nssGroup looks a group up by name with getgrnam_r and returns its gid and
// the users it lists as members (not the users whose primary group it is).
func nssGroup(name string) (gid uint32, members []string, found bool, err error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	grp := (*C.struct_group)(C.malloc(C.size_t(unsafe.Sizeof(C.struct_group{}))))
	defer C.free(unsafe.Pointer(grp))
	for size := 16 << 10; size <= maxGroupBuf; size *= 2 {
		buf := C.malloc(C.size_t(size))
		var res *C.struct_group
		rc := C.getgrnam_r(cname, grp, (*C.char)(buf), C.size_t(size), &res)
		if rc == C.ERANGE {
			C.free(buf)
			continue
		}
		if rc != 0 {
			C.free(buf)
			return 0, nil, false, fmt.Errorf("looking up group '%s': %w", name, syscall.Errno(rc))
		}
		if res == nil {
			C.free(buf)
			return 0, nil, false, nil
		}
		gid, members = uint32(grp.gr_gid), cStrings(grp.gr_mem)
		C.free(buf)
		return gid, members, true, nil
	}
	return 0, nil, false, fmt.Errorf("looking up group '%s': entry larger than %d bytes", name, maxGroupBuf)
}

// cStrings copies a NULL-terminated array of C strings.
func cStrings(p **C.char) []string {
	out := []string{}
	for i := 0; p != nil; i++ {
		s := *(**C.char)(unsafe.Add(unsafe.Pointer(p), uintptr(i)*unsafe.Sizeof(p)))
		if s == nil {
			break
		}
		out = append(out, C.GoString(s))
	}
	return out
}

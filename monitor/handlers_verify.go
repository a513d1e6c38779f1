package monitor

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"privnix/internal/narfs/dumpfs"
	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// Store verification (worker op 35), as Nix 2.8's verifyStore (§6.13), with
// the GC lock held so that the store and the database hold still:
//
//  1. every valid path must be in the store; one that is not is made invalid
//     once its referrers are (referrers first), or reported if a referrer is
//     still there;
//  2. with CheckContents, every <store>/.links entry must hash to its name
//     (repair removes it), and every valid path's NAR serialisation must
//     hash to its registered NarHash.
//
// The NAR is dumped by dumpfs (openat2 beneath the store, no symlink
// followed) from root-owned, sealed trees, as the sealer does. Repair
// (trusted users) fetches a modified or vanished path again from one of the
// connection's substituters (subst.repair); without one it says "cannot
// repair path", as nix-daemon does when it has no substituter or deriver
// for the path (privnixd does not rebuild it from its deriver yet).
func handleVerifyStore(s *session, req msg.Message, _ []*os.File) (reply, error) {
	v := req.(*msg.VerifyStore)
	if v.Repair && !s.trusted {
		return answer(refuse("you are not privileged to repair paths")), nil
	}
	s.m.roots.collecting.Lock()
	defer s.m.roots.collecting.Unlock()
	sfd, err := unix.Open(string(s.m.store.dir), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return s.failed("verifying the store", err), nil
	}
	defer unix.Close(sfd)
	vr := &verifier{m: s.m, storeFd: sfd, repair: v.Repair, done: map[storepath.Path]bool{}, present: map[storepath.Path]bool{}}
	if v.Repair {
		vr.sub = s.newSubst(s.settings())
		vr.sub.event = func(typ uint64, p storepath.Path, cache string) {
			if typ == msg.EventSubstStart {
				vr.line(msg.FoundSubstituting, p, fmt.Sprintf("copying path '%s' from '%s'...", s.m.store.dir.String(p), cache))
			}
		}
		defer vr.sub.close()
	}
	err = vr.existence()
	if err == nil && v.CheckContents {
		err = vr.links()
	}
	if err == nil && v.CheckContents {
		err = vr.contents()
	}
	if err != nil {
		return s.failed("verifying the store", err), nil
	}
	s.log.Info("store verified", "check_contents", v.CheckContents, "repair", v.Repair, "findings", len(vr.found), "errors", vr.errors)
	return verifiedReply(vr.found, vr.errors), nil
}

type verifier struct {
	m       *Monitor
	storeFd int // O_PATH
	repair  bool
	sub     *subst                  // repair: the connection's substituters
	names   map[string]bool         // the store directory's entries
	done    map[storepath.Path]bool // checked for existence
	present map[storepath.Path]bool // valid and in the store
	found   []msg.Finding
	errors  bool
}

func (vr *verifier) add(what uint64, p storepath.Path) {
	vr.found = append(vr.found, msg.Finding{What: what, Path: msg.StorePath(vr.m.store.dir.String(p))})
}

// line is a line the client is shown about p (text).
func (vr *verifier) line(what uint64, p storepath.Path, text string) {
	vr.found = append(vr.found, msg.Finding{What: what, Path: msg.StorePath(vr.m.store.dir.String(p)), Got: text})
}

// existence is step 1.
func (vr *verifier) existence() error {
	names, err := dirNames(vr.storeFd)
	if err != nil {
		return err
	}
	vr.names = map[string]bool{}
	for _, n := range names {
		vr.names[n] = true
	}
	all, err := gcDB{vr.m.store}.AllValid()
	if err != nil {
		return err
	}
	for _, p := range all {
		if err := vr.exists(p); err != nil {
			return err
		}
	}
	return nil
}

// exists checks p, after its referrers (Nix's verifyPath).
func (vr *verifier) exists(p storepath.Path) error {
	if vr.done[p] {
		return nil
	}
	vr.done[p] = true
	if vr.names[p.Base()] {
		vr.present[p] = true
		return nil
	}
	refs, err := gcDB{vr.m.store}.Referrers(p)
	if err != nil {
		return err
	}
	drop := true
	for _, r := range refs {
		if r == p {
			continue
		}
		if err := vr.exists(r); err != nil {
			return err
		}
		if vr.present[r] {
			drop = false
		}
	}
	if drop {
		unlock := vr.m.locks.lockMany([]storepath.Path{p})
		err = gcDB{vr.m.store}.Delete(p)
		unlock()
		if err == nil {
			vr.add(msg.FoundVanished, p)
			return nil
		}
		if !errors.Is(err, storedb.ErrLiveReferrer) {
			return err
		}
	}
	vr.add(msg.FoundVanishedReferred, p)
	info, ok, err := gcDB{vr.m.store}.PathInfo(p)
	if vr.repair && err == nil && ok {
		vr.repairPath(p, info.NarHash)
	} else {
		vr.errors = true
		if vr.repair {
			vr.add(msg.FoundCannotRepair, p)
		}
	}
	return nil
}

// links checks <store>/.links (step 2).
func (vr *verifier) links() error {
	dfd, err := dumpfs.OpenBeneath(vr.storeFd, ".links", unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	names, err := dirNames(dfd)
	if err != nil {
		return err
	}
	for _, name := range names {
		got, err := narSHA256(dfd, name)
		if err != nil || got.Nix32() == name {
			continue // a link optimise is replacing right now, or a good one
		}
		vr.found = append(vr.found, msg.Finding{What: msg.FoundLinkModified, Link: name, Got: got.Nix32()})
		if vr.repair && unix.Unlinkat(dfd, name, 0) == nil {
			vr.found = append(vr.found, msg.Finding{What: msg.FoundLinkRemoved, Link: name})
			continue
		}
		vr.errors = true
	}
	return nil
}

// contents re-hashes every valid path that is in the store (step 2).
func (vr *verifier) contents() error {
	all, err := gcDB{vr.m.store}.AllValid()
	if err != nil {
		return err
	}
	for _, p := range all {
		if !vr.present[p] {
			continue
		}
		info, ok, err := gcDB{vr.m.store}.PathInfo(p)
		if err != nil || !ok {
			continue // collected meanwhile
		}
		got, err := narSHA256(vr.storeFd, p.Base())
		if err != nil {
			vr.found = append(vr.found, msg.Finding{What: msg.FoundUnreadable, Path: msg.StorePath(vr.m.store.dir.String(p)), Got: err.Error()})
			vr.errors = true
			continue
		}
		if got.Equal(info.NarHash) {
			continue
		}
		vr.found = append(vr.found, msg.Finding{What: msg.FoundModified, Path: msg.StorePath(vr.m.store.dir.String(p)),
			Expected: info.NarHash.String(), Got: got.String()})
		if vr.repair {
			vr.repairPath(p, info.NarHash)
		} else {
			vr.errors = true
		}
	}
	return nil
}

// repairPath fetches p again from a substituter (subst.repair); without
// one, or if that fails, p cannot be repaired.
func (vr *verifier) repairPath(p storepath.Path, registered nixhash.Hash) {
	err := vr.sub.repair(p, registered, func(text string) {
		vr.line(msg.FoundWarning, p, text)
	})
	if err != nil {
		vr.m.log.Info("repair by substitution failed", "path", vr.m.store.dir.String(p), "err", err)
		vr.add(msg.FoundCannotRepair, p)
		vr.errors = true
	}
}

// dirNames lists the entries of the directory dirfd (an O_PATH fd will do).
func dirNames(dirfd int) ([]string, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "directory")
	defer f.Close()
	return f.Readdirnames(-1)
}

// narSHA256 hashes the NAR serialisation of name beneath dirfd (dumpfs:
// nothing followed, nothing outside dirfd).
func narSHA256(dirfd int, name string) (nixhash.Hash, error) {
	h := sha256.New()
	if err := dumpfs.Dump(h, dirfd, name); err != nil {
		return nixhash.Hash{}, err
	}
	return nixhash.Hash{Algo: nixhash.SHA256, Digest: h.Sum(nil)}, nil
}

// verifiedReply splits findings into Verified frames; Errors is on the last.
func verifiedReply(found []msg.Finding, errs bool) reply {
	var rep reply
	parts := frames(found, msg.MaxFindings, func(f msg.Finding) int { return len(f.Path) + len(f.Link) + len(f.Expected) + len(f.Got) + 16 })
	for i, part := range parts {
		rep.msgs = append(rep.msgs, &msg.Verified{Findings: part, More: i < len(parts)-1, Errors: errs && i == len(parts)-1})
	}
	return rep
}

package monitor

import (
	"os"

	"privnix/ipc/msg"
	"privnix/nix/storepath"
)

// handleQuerySubstitutable answers QuerySubstitutablePaths (Infos false)
// and QuerySubstitutablePathInfos (Infos true) as Nix's store does: for each
// path, the first cache (by priority) that has a narinfo for it; the paths
// query asks only caches that want mass queries. Like Nix, these are
// answers about what caches offer, so signatures are not checked here
// (substitution checks them).
func handleQuerySubstitutable(s *session, req msg.Message, _ []*os.File) (reply, error) {
	q := req.(*msg.QuerySubstitutable)
	paths, err := s.paths(q.Paths)
	if err != nil {
		return reply{}, err
	}
	x := s.newSubst(s.settings())
	defer x.close()
	var infos []msg.SubstInfo
	for _, p := range paths {
		ni := x.offered(p, !q.Infos)
		if ni == nil {
			continue
		}
		info := msg.SubstInfo{Path: ni.StorePath}
		if q.Infos {
			info.Deriver, info.References = ni.Deriver, ni.References
			info.DownloadSize, info.NarSize = ni.FileSize, ni.NarSize
		}
		infos = append(infos, info)
	}
	return substFrames(infos), nil
}

// substFrames splits infos into frames that stay well inside a message.
func substFrames(infos []msg.SubstInfo) reply {
	var r reply
	const maxRefs = 256 // references per frame
	var cur []msg.SubstInfo
	refs := 0
	for _, i := range infos {
		if len(cur) > 0 && (len(cur) == msg.MaxSubstInfos || refs+len(i.References) > maxRefs) {
			r.msgs = append(r.msgs, &msg.Substitutable{Infos: cur, More: true})
			cur, refs = nil, 0
		}
		cur = append(cur, i)
		refs += len(i.References)
	}
	r.msgs = append(r.msgs, &msg.Substitutable{Infos: cur})
	return r
}

// offered returns the first cache's narinfo for p, whatever its signature
// (nil: none has it); massOnly skips caches that do not want mass queries.
func (x *subst) offered(p storepath.Path, massOnly bool) *msg.NarInfo {
	if len(x.urls) == 0 {
		return nil
	}
	for _, i := range x.order() {
		if info, _ := x.s.m.narinfos.cacheInfo(x.urls[i]); massOnly && !info.WantMassQuery {
			continue
		}
		if ni, err := x.narinfo(i, p); err == nil && ni != nil {
			return ni
		}
	}
	return nil
}

// substituteMissing is QueryValidPaths' substitute flag (the 2.8 client
// sends builders-use-substitutes): the missing paths are substituted first
// where a cache has them; failures only leave them invalid, as Nix's
// substitutePaths logs and goes on.
func (s *session) substituteMissing(ps []storepath.Path) {
	set := s.settings()
	if len(set.Substituters) == 0 || !set.Substitute {
		return
	}
	missing, err := s.m.missingAmong(ps)
	if err != nil || len(missing) == 0 {
		return
	}
	x := s.newSubst(set)
	defer x.close()
	for _, p := range missing {
		if err := x.ensure(p, func(string) {}); err != nil {
			s.log.Info("not substituted", "path", s.m.store.dir.String(p), "err", err)
		}
	}
}

package monitor

import (
	"os"

	"golang.org/x/sys/unix"

	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/nix/storepath"
)

// Read-only requests: database reads, answered for any allowed user (Nix
// lets every connected user query the whole store).

func handleIsValidPath(s *session, req msg.Message, _ []*os.File) (reply, error) {
	p, err := s.path(req.(*msg.IsValidPath).Path)
	if err != nil {
		return reply{}, err
	}
	var ok bool
	if err := s.m.store.with(func(db *storedb.DB) (e error) { ok, e = db.IsValid(p); return }); err != nil {
		return s.failed("IsValidPath", err), nil
	}
	return answer(&msg.Bool{V: ok}), nil
}

func handleQueryPathInfo(s *session, req msg.Message, _ []*os.File) (reply, error) {
	p, err := s.path(req.(*msg.QueryPathInfo).Path)
	if err != nil {
		return reply{}, err
	}
	var info storedb.PathInfo
	var ok bool
	if err := s.m.store.with(func(db *storedb.DB) (e error) { info, ok, e = db.PathInfo(p); return }); err != nil {
		return s.failed("QueryPathInfo", err), nil
	}
	if !ok {
		return answer(&msg.Error{Class: msg.ClassNotValid, Message: "path '" + s.m.store.dir.String(p) + "' is not valid"}), nil
	}
	return answer(s.toMsgInfo(info)), nil
}

func handleQueryPaths(s *session, req msg.Message, _ []*os.File) (reply, error) {
	q := req.(*msg.QueryPaths)
	ps, err := s.paths(q.Paths)
	if err != nil {
		return reply{}, err
	}
	if q.Op == msg.PathsValid && q.Substitute {
		s.substituteMissing(ps) // handlers_substitute.go
	}
	var out []storepath.Path
	err = s.m.store.with(func(db *storedb.DB) (e error) {
		switch q.Op {
		case msg.PathsValid:
			out, e = db.ValidAmong(ps)
		case msg.PathsReferrers:
			out, e = db.Referrers(ps[0])
		case msg.PathsValidDerivers:
			out, e = db.ValidDerivers(ps[0])
		case msg.PathsByHashPart:
			var p storepath.Path
			var ok bool
			if p, ok, e = db.ByHashPart(q.HashPart); ok {
				out = []storepath.Path{p}
			}
		case msg.PathsAll:
			out, e = db.AllValid()
		}
		return e
	})
	if err != nil {
		return s.failed("QueryPaths", err), nil
	}
	return s.pathsReply(out), nil
}

// pathsReply splits a list into frames that fit (msg.Paths with More).
func (s *session) pathsReply(ps []storepath.Path) reply {
	const budget = msg.MaxBody / 2
	var rep reply
	cur := &msg.Paths{}
	size := 0
	for _, p := range ps {
		abs := s.m.store.dir.String(p)
		if len(cur.Paths) == msg.MaxPaths || size+len(abs)+8 > budget {
			cur.More = true
			rep.msgs = append(rep.msgs, cur)
			cur, size = &msg.Paths{}, 0
		}
		cur.Paths = append(cur.Paths, msg.StorePath(abs))
		size += len(abs) + 8
	}
	rep.msgs = append(rep.msgs, cur)
	return rep
}

func handleAddTempRoot(s *session, req msg.Message, _ []*os.File) (reply, error) {
	p, err := s.path(req.(*msg.AddTempRoot).Path)
	if err != nil {
		return reply{}, err
	}
	s.m.roots.addTemp(s, p)
	return answer(&msg.OK{}), nil
}

// path parses a store path the frontend sent. ipc already checked it lies in
// the store directory, so a failure here is a protocol violation.
func (s *session) path(p msg.StorePath) (storepath.Path, error) {
	return s.m.store.dir.Parse(string(p))
}

func (s *session) paths(ps msg.StorePaths) ([]storepath.Path, error) {
	out := make([]storepath.Path, 0, len(ps))
	for _, p := range ps {
		sp, err := s.path(p)
		if err != nil {
			return nil, err
		}
		out = append(out, sp)
	}
	return out, nil
}

func (s *session) toMsgInfo(i storedb.PathInfo) *msg.PathInfo {
	d := s.m.store.dir
	out := &msg.PathInfo{
		Path:             msg.StorePath(d.String(i.Path)),
		NarHash:          i.NarHash.String(),
		RegistrationTime: i.RegistrationTime,
		NarSize:          i.NarSize,
		Ultimate:         i.Ultimate,
		Sigs:             i.Sigs,
		CA:               i.CA,
	}
	if !i.Deriver.IsZero() {
		out.Deriver = msg.StorePath(d.String(i.Deriver))
	}
	for _, r := range i.References {
		out.References = append(out.References, msg.StorePath(d.String(r)))
	}
	return out
}

// handleOpenGeneration hands the frontend the store generation page (a
// sealed memfd it can only read; see ipc/genpage).
func handleOpenGeneration(s *session, _ msg.Message, _ []*os.File) (reply, error) {
	if s.m.store.gen == nil {
		return answer(&msg.Error{Class: msg.ClassUnsupported, Message: "no store generation page"}), nil
	}
	fd, err := unix.FcntlInt(s.m.store.gen.File().Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return s.failed("OpenGeneration", os.NewSyscallError("fcntl", err)), nil
	}
	return answer(&msg.Generation{}, os.NewFile(uintptr(fd), "generation")), nil
}

// handleQueryPathInfos answers a batch of path infos, with part of their
// references' closure, from one snapshot of the database.
func handleQueryPathInfos(s *session, req msg.Message, _ []*os.File) (reply, error) {
	q := req.(*msg.QueryPathInfos)
	ps, err := s.paths(q.Paths)
	if err != nil {
		return reply{}, err
	}
	var infos []storedb.PathInfo
	if err := s.m.store.with(func(db *storedb.DB) (e error) { infos, e = db.ClosureInfos(ps, int(q.Closure)); return }); err != nil {
		return s.failed("QueryPathInfos", err), nil
	}
	out := make([]msg.PathInfo, len(infos))
	for i, info := range infos {
		out[i] = *s.toMsgInfo(info)
	}
	var rep reply
	frames := inFrames(out, infoSize)
	for i, f := range frames {
		rep.msgs = append(rep.msgs, &msg.PathInfos{Infos: f, More: i < len(frames)-1})
	}
	return rep, nil
}

// infoSize bounds the encoded size of i.
func infoSize(i msg.PathInfo) int {
	n := 64 + len(i.Path) + len(i.Deriver) + len(i.NarHash) + len(i.CA)
	for _, r := range i.References {
		n += 5 + len(r)
	}
	for _, sig := range i.Sigs {
		n += 5 + len(sig)
	}
	return n
}

// handleQueryReferrers answers the referrers of a batch of paths, with part
// of their referrers' closure, from one snapshot of the database.
func handleQueryReferrers(s *session, req msg.Message, _ []*os.File) (reply, error) {
	q := req.(*msg.QueryReferrers)
	ps, err := s.paths(q.Paths)
	if err != nil {
		return reply{}, err
	}
	var entries []storedb.PathReferrers
	if err := s.m.store.with(func(db *storedb.DB) (e error) { entries, e = db.ReferrersClosure(ps, int(q.Closure)); return }); err != nil {
		return s.failed("QueryReferrers", err), nil
	}
	// A list too long for one frame continues in the next entry for its path.
	var out []msg.ReferrersOf
	for _, e := range entries {
		path := msg.StorePath(s.m.store.dir.String(e.Path))
		refs := make([]msg.StorePath, len(e.Referrers))
		for i, r := range e.Referrers {
			refs[i] = msg.StorePath(s.m.store.dir.String(r))
		}
		for _, part := range inFrames(refs, pathSize) {
			out = append(out, msg.ReferrersOf{Path: path, Referrers: part})
		}
	}
	var rep reply
	frames := inFrames(out, func(e msg.ReferrersOf) int {
		n := pathSize(e.Path)
		for _, r := range e.Referrers {
			n += pathSize(r)
		}
		return n
	})
	for i, f := range frames {
		rep.msgs = append(rep.msgs, &msg.Referrers{Entries: f, More: i < len(frames)-1})
	}
	return rep, nil
}

func pathSize(p msg.StorePath) int { return 8 + len(p) }

// inFrames splits items into runs of at most msg.MaxPathInfos items and
// about half a frame's body (size bounds one item's encoded size); there is
// always at least one run, perhaps empty.
func inFrames[T any](items []T, size func(T) int) [][]T {
	const budget = msg.MaxBody / 2
	runs := [][]T{nil}
	n := 0
	for _, it := range items {
		cur := &runs[len(runs)-1]
		k := size(it)
		if len(*cur) > 0 && (len(*cur) == msg.MaxPathInfos || n+k > budget) {
			runs = append(runs, nil)
			cur, n = &runs[len(runs)-1], 0
		}
		*cur = append(*cur, it)
		n += k
	}
	return runs
}

package monitor

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/monitor/storefs"
	"privnix/nix/narinfo"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
	"privnix/policy"
)

// An upload (AddToStore, AddTextToStore, AddToStoreNar) goes:
//
//	BeginUpload   policy; a staging directory owned by a fresh storeproc uid;
//	              the storeproc is started and given the directory and the
//	              read end of a pipe; the frontend gets the write end.
//	FinishUpload  the storeproc reports; it is killed (its PID namespace goes
//	              with it); the monitor seals the tree (storefs), checks it
//	              against what was claimed, and registers it: pending →
//	              rename → syncfs → valid.
//
// The bytes go from the frontend to the storeproc; the monitor never reads them.
//
// A small upload (see keepWorker) does not cost a storeproc: its worker is
// not killed but kept for the connection's next upload, and the tree it wrote
// is sealed by copying it into fresh root-created inodes, which is what gets
// hashed (DESIGN.md step 1: a writer that still runs is "in doubt"). A kept
// worker serves only this connection's client, each upload in a staging
// directory of its own (StoreJob.More); it is killed when the connection
// ends, an upload fails or is refused, or is too large to copy cheaply.
// Without root (SharedUID) every upload has its own worker.

// upload is one upload in flight on a session.
type upload struct {
	req     msg.BeginUpload
	claimed storepath.Path // UploadNar: the path the client claims
	stage   *storefs.Staging
	worker  *child
	kept    bool // the worker served an upload before this one
	live    bool // the worker is kept running: seal by copying
	added   bool // the path is valid: the worker may serve the next upload
}

// uploads are a session's uploads in flight, by id, and the worker kept for
// its next upload.
type uploads struct {
	mu    sync.Mutex
	next  uint64
	byID  map[uint64]*upload // guarded by mu
	spare *child             // a live worker waiting for the next StoreJob; guarded by mu
}

// takeSpare returns the kept worker (nil if none).
func (u *uploads) takeSpare() *child {
	u.mu.Lock()
	defer u.mu.Unlock()
	w := u.spare
	u.spare = nil
	return w
}

// takeLiveSpare returns the kept worker if it still runs; one that ended
// (killed from outside) is released.
func (s *session) takeLiveSpare() *child {
	w := s.ups.takeSpare()
	if w == nil {
		return nil
	}
	select {
	case <-w.done:
		s.m.releaseWorker(w)
		return nil
	default:
		return w
	}
}

// putSpare keeps w for the next upload; false if one is kept already or the
// session ended.
func (u *uploads) putSpare(w *child) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.spare != nil || u.byID == nil {
		return false
	}
	u.spare = w
	return true
}

func (u *uploads) add(up *upload) uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byID == nil {
		u.byID = map[uint64]*upload{}
	}
	u.next++
	u.byID[u.next] = up
	return u.next
}

func (u *uploads) take(id uint64) *upload {
	u.mu.Lock()
	defer u.mu.Unlock()
	up := u.byID[id]
	delete(u.byID, id)
	return up
}

// maxUploadsPerSession bounds the storeprocs one connection may hold.
const maxUploadsPerSession = 4

func handleBeginUpload(s *session, req msg.Message, _ []*os.File) (reply, error) {
	b := req.(*msg.BeginUpload)
	s.m.autoCollect(s.snap.set)
	up := &upload{req: *b}
	if b.Repair && !s.trusted {
		return answer(refuse("repairing is not allowed because you are not in 'trusted-users'")), nil
	}
	if b.Mode == msg.UploadNar {
		p, err := s.path(b.Info.Path)
		if err != nil {
			return reply{}, err
		}
		up.claimed = p
		if d := s.mayImport(p, b); !d.Allow {
			return answer(refuse(d.Reason)), nil
		}
	}
	s.ups.mu.Lock()
	busy := len(s.ups.byID)
	s.ups.mu.Unlock()
	if busy >= maxUploadsPerSession {
		return answer(refuse(fmt.Sprintf("too many uploads in flight on one connection (at most %d)", maxUploadsPerSession))), nil
	}
	if rep, ok := s.startUpload(up, true); !ok {
		return rep, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		s.abandon(up)
		return s.failed("creating the upload pipe", err), nil
	}
	defer pr.Close()
	growPipe(pw, b)
	job := &msg.StoreJob{Format: b.Format, MaxBytes: maxBytes(b), MaxDepth: 256, MaxEntries: 1 << 22,
		MaxNameLen: msg.MaxNarNameLen, MaxTargetLen: msg.MaxNarTargetLen, SharedUID: !s.m.root, More: s.m.root}
	err = up.worker.conn.Send(job, up.stage.Dir(), pr)
	if err != nil && up.kept {
		// The kept worker ended since its last upload (killed from
		// outside): the upload goes to a new one.
		s.abandon(up)
		if rep, ok := s.startUpload(up, false); !ok {
			pw.Close()
			return rep, nil
		}
		err = up.worker.conn.Send(job, up.stage.Dir(), pr)
	}
	if err != nil {
		pw.Close()
		s.abandon(up)
		return s.failed("handing the upload to the store worker", err), nil
	}
	id := s.ups.add(up)
	return answer(&msg.UploadChannel{ID: id}, pw), nil
}

// startUpload gives up a worker — the session's kept one (if spare), or a
// new one — and a new staging directory for it.
func (s *session) startUpload(up *upload, spare bool) (reply, bool) {
	var w *child
	if spare {
		w = s.takeLiveSpare()
	}
	up.kept = w != nil
	if w == nil {
		var err error
		if w, err = s.m.startWorker(); err != nil {
			return s.failed("starting a store worker", err), false
		}
	}
	up.worker = w
	var err error
	if up.stage, err = s.m.store.files().NewStaging(s.m.fileUID(w), s.m.fileGID(w)); err != nil {
		s.m.releaseWorker(w)
		return s.failed("creating a staging directory", err), false
	}
	return reply{}, true
}

// Uploads up to these sizes keep their worker (seal by copy): a flat file is
// one inode to copy whatever its size; a NAR of 16 KiB holds at most ~100
// entries. Larger ones are cheaper to take over than to copy.
const (
	keepFlatBytes = 1 << 20
	keepNARBytes  = 16 << 10
)

// keepWorker says whether a staged upload is small enough to seal by copy,
// keeping its worker for the next upload.
func keepWorker(format uint64, staged *msg.Staged) bool {
	if format == msg.FormatFlat {
		return staged.Bytes <= keepFlatBytes
	}
	return staged.Bytes <= keepNARBytes
}

// bigPipe is the upload pipe's capacity for uploads of unknown or large
// size: the frontend and the storeproc then take turns once per MiB instead
// of once per 64 KiB (the pipe's default), a third less wall time for a
// 256 MiB add. Pages are allocated only as bytes wait in it.
const bigPipe = 1 << 20

// growPipe gives a pipe for an upload that may be large bigPipe of capacity
// (best effort: the default works, only slower).
func growPipe(p *os.File, b *msg.BeginUpload) {
	if b.Size != 0 && b.Size <= 64<<10 {
		return
	}
	unix.FcntlInt(p.Fd(), unix.F_SETPIPE_SZ, bigPipe)
}

// maxBytes is what the storeproc may read: the announced size, or the cap.
func maxBytes(b *msg.BeginUpload) uint64 {
	if b.Size != 0 {
		return b.Size
	}
	if b.Mode == msg.UploadNar && b.Info.NarSize != 0 {
		return b.Info.NarSize
	}
	return msg.MaxUpload
}

// mayImport applies Nix's import rule: trusted users may skip signature
// checks; everyone else needs a content address that really yields the path
// (checked again against the bytes when sealing) or a signature by a key in
// trusted-public-keys.
func (s *session) mayImport(p storepath.Path, b *msg.BeginUpload) policy.Decision {
	set := s.snap.set
	return policy.CanImport(s.m.store.dir.String(p), s.trusted, s.claimsCA(p, &b.Info), s.signed(p, &b.Info), set.RequireSigs, b.DontCheckSigs)
}

func (s *session) claimsCA(p storepath.Path, info *msg.PathInfo) bool {
	if info.CA == "" {
		return false
	}
	ca, err := storepath.ParseContentAddress(info.CA)
	if err != nil {
		return false
	}
	refs, self, err := s.refsWithoutSelf(p, info.References)
	if err != nil {
		return false
	}
	got, err := s.m.store.dir.MakeFromCA(p.Name(), ca, refs, self)
	return err == nil && got == p
}

func (s *session) refsWithoutSelf(p storepath.Path, rs msg.StorePaths) ([]storepath.Path, bool, error) {
	var refs []storepath.Path
	self := false
	for _, r := range rs {
		rp, err := s.path(r)
		if err != nil {
			return nil, false, err
		}
		if rp == p {
			self = true
			continue
		}
		refs = append(refs, rp)
	}
	return refs, self, nil
}

func (s *session) signed(p storepath.Path, info *msg.PathInfo) bool {
	h, err := nixhash.Parse(info.NarHash)
	if err != nil {
		return false
	}
	refs, err := s.paths(info.References)
	if err != nil {
		return false
	}
	fp := narinfo.Fingerprint(s.m.store.dir, p, h, info.NarSize, refs)
	var sigs []narinfo.Signature
	for _, raw := range info.Sigs {
		if sig, err := narinfo.ParseSignature(raw); err == nil {
			sigs = append(sigs, sig)
		}
	}
	return narinfo.VerifyAny(fp, sigs, s.snap.keys)
}

func handleFinishUpload(s *session, req msg.Message, _ []*os.File) (reply, error) {
	f := req.(*msg.FinishUpload)
	up := s.ups.take(f.ID)
	if up == nil {
		return reply{}, fmt.Errorf("FinishUpload of unknown upload %d", f.ID)
	}
	staged, werr := awaitStaged(up.worker)
	up.live = werr == nil && s.m.root && keepWorker(up.req.Format, staged)
	// The staging directory goes in every case: after a commit it is empty.
	defer s.finish(up)
	if !up.live {
		// The worker is done: kill its PID namespace before touching what
		// it wrote, so no process of its uid is left.
		up.worker.kill()
	}
	if werr != nil {
		var e *msg.Error
		if errors.As(werr, &e) {
			return answer(e), nil
		}
		return s.failed("the store worker", werr), nil
	}
	info, rep, ok := s.seal(up, staged)
	if !ok {
		return rep, nil
	}
	rep = s.register(up, info)
	if len(rep.msgs) == 1 {
		_, up.added = rep.msgs[0].(*msg.PathInfo)
	}
	return rep, nil
}

// finish ends an upload: its staging directory goes, and its worker too
// unless it is live and the path was added, when it is kept for the
// connection's next upload.
func (s *session) finish(up *upload) {
	s.discard(up)
	if up.live && up.added && s.ups.putSpare(up.worker) {
		return
	}
	s.m.releaseWorker(up.worker)
}

// awaitStaged reads the worker's report: Staged, or its Error.
func awaitStaged(w *child) (*msg.Staged, error) {
	w.conn.SetReadDeadline(time.Now().Add(time.Minute))
	m, fds, err := w.conn.Recv()
	closeFiles(fds)
	if err != nil {
		return nil, fmt.Errorf("the store worker's report: %w", err)
	}
	switch r := m.(type) {
	case *msg.Staged:
		return r, nil
	case *msg.Error:
		return nil, r
	}
	return nil, fmt.Errorf("the store worker answered %v", m.Kind())
}

// seal turns the staged tree into a canonical, root-owned tree and computes
// the store path and info from what is really there.
func (s *session) seal(up *upload, staged *msg.Staged) (storedb.PathInfo, reply, bool) {
	b := &up.req
	opts := storefs.SealOptions{WriterUID: s.m.fileUID(up.worker), Copy: up.live}
	if b.Mode == msg.UploadCA && b.CAMethod != "nar" {
		algo, err := nixhash.ParseAlgo(b.Algo)
		if err != nil {
			return storedb.PathInfo{}, answer(refuse(err.Error())), false
		}
		opts.FlatAlgo = algo
	}
	sealed, err := up.stage.Seal(opts)
	if err != nil {
		return storedb.PathInfo{}, answer(refuse("the upload was refused: " + err.Error())), false
	}
	if b.Mode == msg.UploadCA {
		return s.caInfo(up, sealed)
	}
	return s.importInfo(up, sealed)
}

// caInfo computes a content-addressed add's path from the sealed bytes.
func (s *session) caInfo(up *upload, sealed storefs.Sealed) (storedb.PathInfo, reply, bool) {
	b := &up.req
	d := s.m.store.dir
	refs, err := s.paths(b.References)
	if err != nil {
		return storedb.PathInfo{}, answer(refuse(err.Error())), false
	}
	var ca storepath.ContentAddress
	switch b.CAMethod {
	case "text":
		ca = storepath.ContentAddress{Method: storepath.Text, Hash: sealed.FlatHash}
	case "flat":
		ca = storepath.ContentAddress{Method: storepath.Flat, Hash: sealed.FlatHash}
	case "nar":
		h := sealed.NarHash
		if b.Algo != "sha256" {
			algo, _ := nixhash.ParseAlgo(b.Algo)
			if h, err = narHashAs(up.stage, algo); err != nil {
				return storedb.PathInfo{}, s.failed("hashing the upload", err), false
			}
		}
		ca = storepath.ContentAddress{Method: storepath.Recursive, Hash: h}
	}
	p, err := d.MakeFromCA(b.Name, ca, refs, false)
	if err != nil {
		return storedb.PathInfo{}, answer(refuse(err.Error())), false
	}
	return storedb.PathInfo{Path: p, NarHash: sealed.NarHash, NarSize: sealed.NarSize, References: refs, CA: ca.String()}, reply{}, true
}

// importInfo checks an import against its claimed info: the tree's own NAR
// hash and size must be the claimed ones, and a claimed content address must
// be true of the tree.
func (s *session) importInfo(up *upload, sealed storefs.Sealed) (storedb.PathInfo, reply, bool) {
	i := &up.req.Info
	shown := s.m.store.dir.String(up.claimed)
	claimed, err := nixhash.Parse(i.NarHash)
	if err != nil || !claimed.Equal(sealed.NarHash) {
		return storedb.PathInfo{}, answer(refuse(fmt.Sprintf("hash mismatch importing path '%s';\n  specified: %s\n  got:       %s",
			shown, i.NarHash, sealed.NarHash.String()))), false
	}
	if i.NarSize != 0 && i.NarSize != sealed.NarSize {
		return storedb.PathInfo{}, answer(refuse(fmt.Sprintf("size mismatch importing path '%s';\n  specified: %d\n  got:       %d",
			shown, i.NarSize, sealed.NarSize))), false
	}
	refs, err := s.paths(i.References)
	if err != nil {
		return storedb.PathInfo{}, answer(refuse(err.Error())), false
	}
	info := storedb.PathInfo{Path: up.claimed, NarHash: sealed.NarHash, NarSize: sealed.NarSize, References: refs,
		Sigs: i.Sigs, CA: i.CA, Ultimate: i.Ultimate && s.trusted}
	if i.Deriver != "" {
		if info.Deriver, err = s.path(i.Deriver); err != nil {
			return storedb.PathInfo{}, answer(refuse(err.Error())), false
		}
	}
	if i.CA != "" && !s.caHolds(up, sealed) {
		return storedb.PathInfo{}, answer(refuse(fmt.Sprintf("path '%s' claims to be content-addressed as '%s' but is not", shown, i.CA))), false
	}
	return info, reply{}, true
}

// caHolds checks a claimed content address against the sealed tree.
func (s *session) caHolds(up *upload, sealed storefs.Sealed) bool {
	if !s.claimsCA(up.claimed, &up.req.Info) {
		return false
	}
	ca, _ := storepath.ParseContentAddress(up.req.Info.CA)
	var got nixhash.Hash
	var err error
	switch {
	case ca.Method == storepath.Recursive && ca.Hash.Algo == nixhash.SHA256:
		got = sealed.NarHash // the seal's own pass: no second one
	case ca.Method == storepath.Recursive:
		got, err = narHashAs(up.stage, ca.Hash.Algo)
	default: // text and flat hash the single file's contents
		got, err = fileHashAs(up.stage, ca.Hash.Algo)
	}
	return err == nil && got.Equal(ca.Hash)
}

// register makes the sealed tree a valid store path, exactly once even when
// several clients add the same path at once.
func (s *session) register(up *upload, info storedb.PathInfo) reply {
	unlock := s.m.locks.lock(info.Path)
	defer unlock()
	// Temporary roots first, under the path's lock, before anything is
	// checked or registered: the collector either deleted the path (and its
	// references) already or leaves them alone (handlers_gc.go).
	s.m.roots.addTemp(s, info.Path)
	for _, r := range info.References {
		s.m.roots.addTemp(s, r)
	}
	st := s.m.store
	var existing storedb.PathInfo
	var valid bool
	if err := st.with(func(db *storedb.DB) (e error) { existing, valid, e = db.PathInfo(info.Path); return }); err != nil {
		return s.failed("registering the path", err)
	}
	if valid && !up.req.Repair {
		return answer(s.toMsgInfo(existing))
	}
	if missing, err := s.missingReference(info); err != nil || missing != "" {
		if err != nil {
			return s.failed("checking references", err)
		}
		return answer(refuse(fmt.Sprintf("cannot add path '%s' because its reference '%s' is not valid", st.dir.String(info.Path), missing)))
	}
	err := st.with(func(db *storedb.DB) error {
		if valid { // repair (trusted users only: handleBeginUpload)
			return replaceValid(st.files(), up.stage, db, info)
		}
		if err := db.MarkPending(info.Path); err != nil {
			return err
		}
		if err := up.stage.Commit(info.Path.Base()); err != nil {
			db.ClearPending(info.Path)
			return err
		}
		return db.RegisterValid([]storedb.PathInfo{info}, nil)
	})
	if err != nil {
		if errors.Is(err, storedb.ErrMissingReference) {
			return answer(refuse(err.Error()))
		}
		return s.failed("registering the path", err)
	}
	s.audit.Info("path registered", "path", st.dir.String(info.Path), "nar_size", info.NarSize)
	s.afterRegister(info.Path) // a .drv: verified, its outputs recorded (build_drvs.go)
	s.m.autoOptimise(s.snap.set, info.Path)
	var out storedb.PathInfo
	st.with(func(db *storedb.DB) (e error) { out, _, e = db.PathInfo(info.Path); return })
	return answer(s.toMsgInfo(out))
}

// missingReference names a reference of info that is neither valid nor the
// path itself ("" if there is none).
func (s *session) missingReference(info storedb.PathInfo) (string, error) {
	var refs []storepath.Path
	for _, r := range info.References {
		if r != info.Path {
			refs = append(refs, r)
		}
	}
	var valid []storepath.Path
	if err := s.m.store.with(func(db *storedb.DB) (e error) { valid, e = db.ValidAmong(refs); return }); err != nil {
		return "", err
	}
	ok := map[storepath.Path]bool{}
	for _, v := range valid {
		ok[v] = true
	}
	for _, r := range refs {
		if !ok[r] {
			return s.m.store.dir.String(r), nil
		}
	}
	return "", nil
}

// abandon ends an upload that never finished.
func (s *session) abandon(up *upload) {
	up.worker.kill()
	s.discard(up)
	s.m.releaseWorker(up.worker)
}

func (s *session) discard(up *upload) {
	if err := up.stage.Discard(); err != nil {
		s.log.Error("removing a staging directory failed", "staging", up.stage.ID(), "err", err)
	}
}

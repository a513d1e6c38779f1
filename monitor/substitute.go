package monitor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"privnix/ipc/msg"
	"privnix/nix/conf"
	"privnix/nix/narinfo"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// Substitution: getting a path from a binary cache instead of building it.
//
//	request (Build, QueryMissing, …)          monitor                       fetcher          storeproc
//	  substituters: the connection's settings (nix.conf, SetOptions as policy allowed)
//	  narinfo: the monitor's cache, else GetNarInfo ──────────────────────▶ parses text
//	  the monitor builds the fingerprint itself and checks a signature by a
//	  key in trusted-public-keys (require-sigs), or the content address
//	  references first (each the same way), then:
//	  pipe; StoreJob + [staging, read end] ───────────────────────────────────────────────────▶ unpacks
//	  GetNar + [write end] ──────────────────────────────────────────────▶ downloads, decompresses
//	  seal (the upload sealer: its NAR hash and size must be the narinfo's),
//	  register exactly the signed path, NarHash, NarSize, References.
//
// The monitor links neither the narinfo text parser nor a decompressor: it
// reads only msg.NarInfo's fields.

// Nix's defaults for narinfo-cache-positive-ttl and -negative-ttl.
const (
	defaultPositiveTTL = 30 * 24 * time.Hour
	defaultNegativeTTL = time.Hour
	cacheInfoTTL       = time.Hour
	maxNarinfoEntries  = 1 << 16 // a few tens of MiB at most
	// fetchDeadline bounds one answer of the fetcher (a NAR download has its
	// own stall timeout in the fetcher; this is the monitor's backstop).
	fetchDeadline = 6 * time.Hour
	maxClosure    = 1 << 16 // paths one substitution may pull in
)

// narinfoCache remembers narinfos (and their absence) per cache URL and hash
// part, and each cache's nix-cache-info, for all connections: a narinfo is
// the same whoever asks; signatures are checked per use against the asking
// connection's keys.
type narinfoCache struct {
	mu     sync.Mutex
	infos  map[narinfoKey]narinfoEntry // guarded by mu
	caches map[string]cacheInfoEntry   // guarded by mu
}

type narinfoKey struct{ cache, hashPart string }

type narinfoEntry struct {
	ni    *msg.NarInfo // nil: the cache does not have it
	until time.Time
}

type cacheInfoEntry struct {
	info  msg.CacheInfo
	until time.Time
}

func newNarinfoCache() *narinfoCache {
	return &narinfoCache{infos: map[narinfoKey]narinfoEntry{}, caches: map[string]cacheInfoEntry{}}
}

func (c *narinfoCache) get(k narinfoKey) (*msg.NarInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.infos[k]
	if !ok || time.Now().After(e.until) {
		return nil, false
	}
	return e.ni, true
}

func (c *narinfoCache) put(k narinfoKey, ni *msg.NarInfo, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.infos) >= maxNarinfoEntries {
		clear(c.infos)
	}
	c.infos[k] = narinfoEntry{ni: ni, until: time.Now().Add(ttl)}
}

func (c *narinfoCache) cacheInfo(url string) (msg.CacheInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.caches[url]
	if !ok || time.Now().After(e.until) {
		return msg.CacheInfo{}, false
	}
	return e.info, true
}

func (c *narinfoCache) putCacheInfo(url string, info msg.CacheInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.caches[url] = cacheInfoEntry{info: info, until: time.Now().Add(cacheInfoTTL)}
}

// subst is one request's substitution: the connection's substituters and
// keys, its fetchers (started when the network is first needed) and what
// this request substituted already.
type subst struct {
	s        *session
	set      *conf.Settings
	keys     []narinfo.PublicKey
	urls     []string // in the connection's order; FetchJob indices
	posTTL   time.Duration
	negTTL   time.Duration
	fetchers *fetcherPool
	spares   *workerSpares // kept storeprocs (small NARs)
	reg      *registrar    // registers sealed downloads in batches
	// event, if set, tells the client a download starts (msg.EventSubstStart,
	// text = the cache's URL) and ends (msg.EventSubstStop).
	event func(typ uint64, p storepath.Path, text string)
	// ctx, if set, ends the request: no download starts after it is done.
	ctx     context.Context
	work    sync.Mutex // one closure at a time: plans see every earlier result
	mu      sync.Mutex // guards the fields below
	done    map[storepath.Path]error
	planned map[storepath.Path]bool
}

// newSubst returns the request's substituter view; with no substituters (or
// substitute = false) every lookup finds nothing and nothing is spawned.
func (s *session) newSubst(set *conf.Settings) *subst {
	x := &subst{s: s, set: set, done: map[storepath.Path]error{}, planned: map[storepath.Path]bool{},
		posTTL: ttlSetting(set, "narinfo-cache-positive-ttl", defaultPositiveTTL),
		negTTL: ttlSetting(set, "narinfo-cache-negative-ttl", defaultNegativeTTL)}
	if set.Substitute {
		for _, u := range set.Substituters {
			if err := msg.ValidCacheURL(u); err != nil {
				s.log.Warn("ignoring a substituter privnix cannot use", "substituter", u, "err", err)
				continue
			}
			if !slices.Contains(x.urls, u) && len(x.urls) < msg.MaxCaches {
				x.urls = append(x.urls, u)
			}
		}
	}
	for _, k := range set.TrustedPublicKeys {
		if pk, err := narinfo.ParsePublicKey(k); err == nil {
			x.keys = append(x.keys, pk)
		}
	}
	x.fetchers = newFetcherPool(s.m, x.urls, set.ConnectTimeout)
	x.spares = &workerSpares{m: s.m}
	x.reg = newRegistrar(x)
	return x
}

func ttlSetting(set *conf.Settings, name string, def time.Duration) time.Duration {
	if v, ok := set.Get(name); ok {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return def
}

// close ends the request's fetchers and kept storeprocs.
func (x *subst) close() {
	x.fetchers.close()
	x.spares.close()
}

// ask sends one request to an idle fetcher and returns its answer.
func (x *subst) ask(req msg.Message, fds ...*os.File) (msg.Message, error) {
	c, err := x.fetchers.get()
	if err != nil {
		return nil, err
	}
	if err := c.conn.Send(req, fds...); err != nil {
		x.fetchers.put(c, true)
		return nil, fmt.Errorf("asking the fetcher: %w", err)
	}
	c.conn.SetReadDeadline(time.Now().Add(fetchDeadline))
	ans, afds, err := c.conn.Recv()
	closeFiles(afds)
	if err != nil {
		x.fetchers.put(c, true)
		return nil, fmt.Errorf("the fetcher's answer: %w", err)
	}
	if kindOK := ans.Kind() == msg.KindError || ans.Kind() == req.Kind()+1; !kindOK {
		x.fetchers.put(c, true)
		return nil, fmt.Errorf("the fetcher answered %v with %v", req.Kind(), ans.Kind())
	}
	x.fetchers.put(c, false)
	if e, ok := ans.(*msg.Error); ok {
		return nil, e
	}
	return ans, nil
}

// order returns the usable caches' indices by priority (lower first; ties
// in the configured order), as Nix sorts its substituters.
func (x *subst) order() []int {
	infos := make([]msg.CacheInfo, len(x.urls))
	known := true
	for i, u := range x.urls {
		var ok bool
		if infos[i], ok = x.s.m.narinfos.cacheInfo(u); !ok {
			known = false
		}
	}
	if !known {
		c, err := x.fetchers.get() // a fetcher's start reads every nix-cache-info
		if err != nil {
			return nil
		}
		x.fetchers.put(c, false)
		for i, u := range x.urls {
			infos[i], _ = x.s.m.narinfos.cacheInfo(u)
		}
	}
	var idx []int
	for i, info := range infos {
		if info.Err == "" && info.StoreDir == x.s.m.cfg.Paths.StoreDir {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(infos[a].Priority, infos[b].Priority) })
	return idx
}

// narinfo returns cache i's narinfo for p (nil: not there), from the
// monitor's cache or the fetcher.
func (x *subst) narinfo(i int, p storepath.Path) (*msg.NarInfo, error) {
	k := narinfoKey{x.urls[i], p.HashPart()}
	if ni, ok := x.s.m.narinfos.get(k); ok {
		return ni, nil
	}
	ans, err := x.ask(&msg.GetNarInfo{Cache: uint64(i), HashPart: p.HashPart()})
	if err != nil {
		return nil, err
	}
	ni := ans.(*msg.NarInfo) // ask checked the kind
	if !ni.Found {
		x.s.m.narinfos.put(k, nil, x.negTTL)
		return nil, nil
	}
	if ni.StorePath != msg.StorePath(x.s.m.store.dir.String(p)) {
		return nil, fmt.Errorf("binary cache '%s' answered for '%s' with a narinfo of '%s'", x.urls[i], x.s.m.store.dir.String(p), ni.StorePath)
	}
	x.s.m.narinfos.put(k, ni, x.posTTL)
	return ni, nil
}

// offer is a narinfo the connection may use: found, for the path, and
// signed by a trusted key (or content-addressed) when signatures are required.
type offer struct {
	path  storepath.Path
	cache int
	ni    *msg.NarInfo
	refs  []storepath.Path // without the path itself
	// repair: p is valid but its store copy is bad; the download replaces it
	repair bool
}

// find returns the first cache's usable offer for p, or nil. Lookup
// failures and unsigned narinfos are warnings (Nix's texts) and the next
// cache is tried.
func (x *subst) find(p storepath.Path, warn func(string)) *offer {
	if len(x.urls) == 0 {
		return nil
	}
	shown := x.s.m.store.dir.String(p)
	for _, i := range x.order() {
		ni, err := x.narinfo(i, p)
		if err != nil {
			warn(errorText(err))
			continue
		}
		if ni == nil {
			continue
		}
		o, ok := x.check(i, p, ni)
		if !ok {
			warn(fmt.Sprintf("the substitute for '%s' from '%s' is not signed by any of the keys in 'trusted-public-keys'", shown, x.urls[i]))
			continue
		}
		return o
	}
	return nil
}

// check builds the fingerprint from the narinfo's fields and verifies a
// signature by a trusted key; a narinfo whose content address really yields
// the path needs none (as Nix). Anything that does not parse is unusable.
func (x *subst) check(i int, p storepath.Path, ni *msg.NarInfo) (*offer, bool) {
	d := x.s.m.store.dir
	h, err := nixhash.Parse(ni.NarHash)
	if err != nil || h.Algo != nixhash.SHA256 {
		return nil, false
	}
	o := &offer{path: p, cache: i, ni: ni}
	var all []storepath.Path
	self := false
	for _, r := range ni.References {
		rp, err := d.Parse(string(r))
		if err != nil {
			return nil, false
		}
		all = append(all, rp)
		if rp == p {
			self = true
		} else {
			o.refs = append(o.refs, rp)
		}
	}
	if !x.set.RequireSigs {
		return o, true
	}
	if ni.CA != "" {
		if ca, err := storepath.ParseContentAddress(ni.CA); err == nil {
			if got, err := d.MakeFromCA(p.Name(), ca, o.refs, self); err == nil && got == p {
				return o, true
			}
		}
	}
	fp := narinfo.Fingerprint(d, p, h, ni.NarSize, all)
	var sigs []narinfo.Signature
	for _, raw := range ni.Sigs {
		if sig, err := narinfo.ParseSignature(raw); err == nil {
			sigs = append(sigs, sig)
		}
	}
	return o, narinfo.VerifyAny(fp, sigs, x.keys)
}

// errorText is what a user sees of a fetcher or monitor error.
func errorText(err error) string {
	var e *msg.Error
	if errors.As(err, &e) && e.Class == msg.ClassPolicy {
		return e.Message
	}
	return "the binary cache request failed in privnixd; see its log"
}

// substError is a substitution that did not happen; none says no cache had
// the path (Nix's NoSubstituters: a build may go on locally), else a cache
// failed (a bad NAR, a network error).
type substError struct {
	none bool
	msg  string
}

func (e *substError) Error() string { return e.msg }

// substJobs is how many paths of one closure are downloaded at once (Nix's
// max-substitution-jobs is 16; this machine-friendly default bounds the
// storeprocs and fetchers one request holds).
const substJobs = 4

// ensure makes p valid by substitution, its references first: a plan of the
// missing closure (narinfos, signatures), then up to substJobs downloads at
// once, each registered once its references are. Closures are planned one
// at a time per request, so a cycle a hostile cache describes is seen on
// the planning stack, never waited on.
func (x *subst) ensure(p storepath.Path, warn func(string)) error {
	x.work.Lock()
	defer x.work.Unlock()
	var plan []*offer
	if err := x.plan(p, warn, map[storepath.Path]bool{}, &plan); err != nil {
		return err
	}
	x.run(plan, warn)
	return x.result(p)
}

func (x *subst) result(p storepath.Path) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.done[p]
}

func (x *subst) setResult(p storepath.Path, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.done[p] = err
}

// plan appends p's missing closure to out, references first. A path no
// cache offers (or a reference of it) fails the plan: Nix's NoSubstituters.
func (x *subst) plan(p storepath.Path, warn func(string), stack map[storepath.Path]bool, out *[]*offer) error {
	x.mu.Lock()
	err, done := x.done[p]
	planned := x.planned[p]
	x.mu.Unlock()
	if done || planned {
		return err
	}
	shown := x.s.m.store.dir.String(p)
	if stack[p] || len(x.planned) > maxClosure {
		return &substError{msg: fmt.Sprintf("the references of '%s' in the binary cache form a cycle or are too many", shown)}
	}
	stack[p] = true
	defer delete(stack, p)
	if missing, err := x.s.m.missingAmong([]storepath.Path{p}); err != nil {
		return &substError{msg: "checking validity failed in privnixd"}
	} else if len(missing) == 0 {
		x.setResult(p, nil)
		return nil
	}
	o := x.find(p, warn)
	if o == nil {
		err := &substError{none: true, msg: fmt.Sprintf("path '%s' is required, but there is no substituter that can build it", shown)}
		x.setResult(p, err)
		return err
	}
	for _, r := range o.refs {
		if err := x.plan(r, warn, stack, out); err != nil {
			var se *substError
			if errors.As(err, &se) && se.none {
				err = &substError{none: true, msg: fmt.Sprintf("some references of path '%s' could not be realised", shown)}
			}
			x.setResult(p, err)
			return err
		}
	}
	x.mu.Lock()
	x.planned[p] = true
	x.mu.Unlock()
	*out = append(*out, o)
	return nil
}

// run downloads the plan, substJobs at a time, in its order: a path's
// references started before it, so the oldest unfinished path always runs
// and waits on nothing unfinished. A path is queued for registration
// (x.reg) once its references are queued before it.
func (x *subst) run(plan []*offer, warn func(string)) {
	queued := make(map[storepath.Path]func(), len(plan))
	waits := make(map[storepath.Path]chan struct{}, len(plan))
	for _, o := range plan {
		ch := make(chan struct{})
		waits[o.path], queued[o.path] = ch, sync.OnceFunc(func() { close(ch) })
	}
	refsDone := func(o *offer) error {
		for _, r := range o.refs {
			if ch, ok := waits[r]; ok {
				<-ch
			}
			if err := x.result(r); err != nil {
				return &substError{msg: fmt.Sprintf("some references of path '%s' could not be realised", x.s.m.store.dir.String(o.path))}
			}
		}
		return nil
	}
	sem := make(chan struct{}, substJobs)
	var wg sync.WaitGroup
	for _, o := range plan {
		sem <- struct{}{}
		if x.ctx != nil && x.ctx.Err() != nil {
			<-sem
			x.setResult(o.path, &substError{msg: "the request was abandoned"})
			queued[o.path]()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer queued[o.path]()
			x.setResult(o.path, x.substituteOne(o, warn, func() error { return refsDone(o) }, queued[o.path]))
		}()
	}
	wg.Wait()
}

// substituteOne downloads, checks and registers one planned path.
func (x *subst) substituteOne(o *offer, warn func(string), refsDone func() error, queued func()) error {
	shown := x.s.m.store.dir.String(o.path)
	x.s.log.Info("substituting", "path", shown, "from", x.urls[o.cache])
	if x.event != nil {
		x.event(msg.EventSubstStart, o.path, strings.TrimSuffix(x.urls[o.cache], "/"))
		defer x.event(msg.EventSubstStop, o.path, "")
	}
	err := x.download(o.path, o, refsDone, queued)
	if err == nil {
		return nil
	}
	text := errorText(err)
	var se *substError
	if errors.As(err, &se) {
		return se // a reference failed: reported where it happened
	}
	warn(fmt.Sprintf("substitution of path '%s' from '%s' failed: %s", shown, x.urls[o.cache], text))
	return &substError{msg: fmt.Sprintf("substitution of path '%s' failed: %s", shown, text)}
}

// download streams the NAR from a fetcher to a storeproc, seals it, waits
// for its references, and registers it as an import of exactly the
// narinfo's fields. A small NAR keeps its storeproc for the request's next
// one, as a connection's small uploads do (handlers_upload.go): its tree is
// then sealed by copy, and the worker goes back to x.spares only once the
// path is registered.
func (x *subst) download(p storepath.Path, o *offer, refsDone func() error, queued func()) error {
	s, m := x.s, x.s.m
	ni := o.ni
	up := &upload{claimed: p, req: msg.BeginUpload{Mode: msg.UploadNar, Format: msg.FormatNAR, Repair: o.repair,
		Size: ni.NarSize, Info: msg.PathInfo{Path: ni.StorePath, Deriver: ni.Deriver, NarHash: ni.NarHash,
			References: ni.References, NarSize: ni.NarSize, Sigs: ni.Sigs, CA: ni.CA}}}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	job := &msg.StoreJob{Format: msg.FormatNAR, MaxBytes: ni.NarSize, MaxDepth: 256, MaxEntries: 1 << 22,
		MaxNameLen: msg.MaxNarNameLen, MaxTargetLen: msg.MaxNarTargetLen, SharedUID: !m.root, More: m.root}
	err = x.handOver(up, job, pr)
	pr.Close()
	if err != nil {
		pw.Close()
		return err
	}
	defer func() {
		s.discard(up)
		if up.live && up.added {
			x.spares.put(up.worker)
		} else {
			m.releaseWorker(up.worker)
		}
	}()
	_, ferr := x.ask(&msg.GetNar{Cache: uint64(o.cache), URL: ni.URL, Compression: ni.Compression,
		FileSize: ni.FileSize, NarSize: ni.NarSize}, pw)
	pw.Close()
	staged, werr := awaitStaged(up.worker)
	up.live = ferr == nil && werr == nil && m.root && !o.repair && keepWorker(msg.FormatNAR, staged)
	if !up.live {
		up.worker.kill() // before its tree is touched: no process of its uid is left
	}
	if ferr != nil {
		return ferr
	}
	if werr != nil {
		return werr
	}
	info, rep, ok := s.seal(up, staged)
	if !ok {
		return replyError(rep)
	}
	if err := refsDone(); err != nil {
		return err
	}
	if o.repair { // swapped in under the path's lock (register: replaceValid)
		return replyError(s.register(up, info))
	}
	return x.reg.register(up, info, queued)
}

// repair fetches a valid path whose store copy is modified or missing
// again (Nix's repairPath by substitution): the first cache's usable offer,
// only if its NAR hash is the registered one, downloaded and sealed as any
// substitution and put in place of the bad copy.
func (x *subst) repair(p storepath.Path, registered nixhash.Hash, warn func(string)) error {
	o := x.find(p, warn)
	if o == nil {
		return &substError{none: true, msg: fmt.Sprintf("path '%s' is required, but there is no substituter that can build it", x.s.m.store.dir.String(p))}
	}
	if h, err := nixhash.Parse(o.ni.NarHash); err != nil || !h.Equal(registered) {
		return &substError{none: true, msg: fmt.Sprintf("the substitute for '%s' from '%s' has another NAR hash than the registered one", x.s.m.store.dir.String(p), x.urls[o.cache])}
	}
	o.repair = true
	return x.substituteOne(o, warn, func() error { return nil }, func() {})
}

// handOver gives the job to a kept storeproc of the request (or, if none is
// spare or it ended meanwhile, a new one) with a new staging directory.
func (x *subst) handOver(up *upload, job *msg.StoreJob, pr *os.File) error {
	m := x.s.m
	for _, kept := range []bool{true, false} {
		var w *child
		if kept {
			if w = x.spares.take(); w == nil {
				continue
			}
		} else {
			var err error
			if w, err = m.startWorker(); err != nil {
				return fmt.Errorf("starting a store worker: %w", err)
			}
		}
		stage, err := m.store.files().NewStaging(m.fileUID(w), m.fileGID(w))
		if err != nil {
			m.releaseWorker(w)
			return fmt.Errorf("creating a staging directory: %w", err)
		}
		up.worker, up.stage, up.kept = w, stage, kept
		if err = w.conn.Send(job, stage.Dir(), pr); err == nil {
			return nil
		}
		s := x.s
		s.discard(up)
		m.releaseWorker(w)
		if !kept {
			return fmt.Errorf("handing the NAR to the store worker: %w", err)
		}
	}
	return errors.New("unreachable")
}

// workerSpares are a request's kept storeprocs, waiting for the next small NAR.
type workerSpares struct {
	m    *Monitor
	mu   sync.Mutex
	idle []*child // guarded by mu
}

func (w *workerSpares) take() *child {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.idle)
	if n == 0 {
		return nil
	}
	c := w.idle[n-1]
	w.idle = w.idle[:n-1]
	return c
}

func (w *workerSpares) put(c *child) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.idle) >= substJobs {
		w.m.releaseWorker(c)
		return
	}
	w.idle = append(w.idle, c)
}

// close kills every kept storeproc.
func (w *workerSpares) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.idle {
		w.m.releaseWorker(c)
	}
	w.idle = nil
}

// replyError turns a handler reply carrying msg.Error into an error.
func replyError(r reply) error {
	for _, m := range r.msgs {
		if e, ok := m.(*msg.Error); ok {
			return e
		}
	}
	return nil
}

// startFetcher starts a fetcher as a fresh storeproc-range uid and reads
// every cache's nix-cache-info through it.
func (m *Monitor) startFetcher(urls []string, connectTimeout uint64) (*child, error) {
	uid, err := m.spUIDs.get()
	if err != nil {
		return nil, fmt.Errorf("no free uid for a fetcher: %w", err)
	}
	c, err := m.spawner.spawn(spawnSpec{role: roleFetcher, uid: uid, asUID: m.root})
	if err != nil {
		m.spUIDs.put(uid)
		return nil, err
	}
	go m.forwardLogs(c)
	fail := func(err error) (*child, error) { m.releaseWorker(c); return nil, err }
	if err := awaitHello(c); err != nil {
		return fail(err)
	}
	if err := c.conn.SetStoreDir(m.cfg.Paths.StoreDir); err != nil {
		return fail(err)
	}
	job := &msg.FetchJob{Caches: urls, StoreDir: m.cfg.Paths.StoreDir, ConnectTimeout: connectTimeout, SharedUID: !m.root}
	if err := c.conn.Send(job); err != nil {
		return fail(err)
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	ans, fds, err := c.conn.Recv()
	closeFiles(fds)
	if err != nil {
		return fail(fmt.Errorf("the fetcher's cache infos: %w", err))
	}
	infos, ok := ans.(*msg.CacheInfos)
	if !ok || len(infos.Infos) != len(urls) {
		return fail(fmt.Errorf("the fetcher answered FetchJob with %v", ans.Kind()))
	}
	for i, u := range urls {
		info := infos.Infos[i]
		if info.Err != "" {
			m.log.Warn("binary cache unusable", "substituter", u, "err", info.Err)
		}
		m.narinfos.putCacheInfo(u, info)
	}
	return c, nil
}

package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/nix/conf"
	"privnix/nix/drv"
	"privnix/nix/storepath"
)

// Builds. A frontend's Build names targets; the monitor verifies each
// derivation (build_drvs.go), builds missing input derivations first (depth
// first, in input order), and builds each derivation whose outputs are not
// all valid: one build of an output at a time across all clients (pathLocks),
// at most max-jobs at once, each as a build user of its own (build_users.go),
// in privnix-build's namespaces (build_run.go). Log lines go to the frontend
// as BuildEvent messages while the handler runs; the answer is BuildResults.

// Nix's BuildResult statuses.
const (
	statusBuilt            = 0
	statusSubstituted      = 1
	statusAlreadyValid     = 2
	statusPermanentFailure = 3
	statusOutputRejected   = 5
	statusTransientFailure = 6
	statusTimedOut         = 8
	statusMiscFailure      = 9
	statusDependencyFailed = 10
	statusLogLimitExceeded = 11
	statusNotDeterministic = 12
	statusNoSubstituters   = 14
)

// ANSI codes Nix puts in its error messages (the client strips them when
// its stderr is not a terminal).
const (
	ansiWarn   = "\x1b[35;1m"
	ansiBold   = "\x1b[1m"
	ansiNormal = "\x1b[0m"
)

func yellow(s string) string { return ansiWarn + s + ansiNormal }

// builds is the monitor's build state.
type builds struct {
	m     *Monitor
	drvs  drvMemo
	users *buildUsers

	parserMu sync.Mutex
	parser   *drvParser // the derivation parser (a storeproc), started when first needed; guarded by parserMu

	wantMu sync.Mutex
	wanted map[storepath.Path]int // requests waiting for or running a build of a derivation; guarded by wantMu
}

func newBuilds(m *Monitor) *builds {
	return &builds{m: m, drvs: drvMemo{m: map[storepath.Path]*verifiedDrv{}}, users: newBuildUsers(m),
		wanted: map[storepath.Path]int{}}
}

// want records that a request wants d built, until the returned release.
func (b *builds) want(d storepath.Path) func() {
	b.wantMu.Lock()
	b.wanted[d]++
	b.wantMu.Unlock()
	return func() {
		b.wantMu.Lock()
		defer b.wantMu.Unlock()
		if b.wanted[d]--; b.wanted[d] <= 0 {
			delete(b.wanted, d)
		}
	}
}

// othersWant reports whether a request other than the one building d
// waits for it.
func (b *builds) othersWant(d storepath.Path) bool {
	b.wantMu.Lock()
	defer b.wantMu.Unlock()
	return b.wanted[d] > 1
}

// outcome is how one derivation's realisation went, within one request.
type outcome struct {
	status uint64
	msg    string
	built  bool
	// stopped: never finished because the request was abandoned (the
	// client left, or another build failed without keep-going)
	stopped bool
	start   time.Time
	stop    time.Time
	ready   chan struct{} // closed when the fields above are final
}

func (o *outcome) ok() bool {
	return o.status == statusBuilt || o.status == statusAlreadyValid || o.status == statusSubstituted
}

// buildRequest is one Build being answered.
type buildRequest struct {
	s      *session
	set    *conf.Settings // the connection's settings (nix.conf and SetOptions)
	mode   uint64         // msg.BuildMode*: applies to the targets; their inputs are built normally
	slots  chan struct{}  // max-jobs: as nix-daemon, per connection
	sendMu sync.Mutex
	mu     sync.Mutex
	done   map[storepath.Path]*outcome // guarded by mu
	// checked: paths whose contents repair checked, and whether they were good; guarded by mu
	checked map[storepath.Path]bool
	// ctx ends when the request is abandoned: the frontend is gone (its
	// client hung up), or a build failed and keep-going is off. Waits end
	// and builds no other request waits for are killed.
	ctx     context.Context
	abandon context.CancelFunc
	sub     *subst // substitution (substitute_build.go)
}

func newBuildRequest(s *session, mode uint64) *buildRequest {
	set := s.settings()
	ctx, abandon := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.fe.done:
			abandon()
		case <-ctx.Done():
		}
	}()
	return &buildRequest{s: s, set: set, mode: mode, slots: make(chan struct{}, max(int(set.MaxJobs), 1)),
		done: map[storepath.Path]*outcome{}, checked: map[storepath.Path]bool{}, ctx: ctx, abandon: abandon}
}

// event sends a BuildEvent to the frontend (from the handler or a log
// reader); a failure to send is logged, the build goes on.
func (r *buildRequest) event(typ uint64, d storepath.Path, text string) {
	if len(text) > msg.MaxText {
		text = text[:msg.MaxText]
	}
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	if err := r.s.fe.conn.Send(&msg.BuildEvent{Type: typ, Drv: msg.StorePath(r.s.m.store.dir.String(d)), Text: text}); err != nil {
		r.s.log.Warn("sending a build event failed", "err", err)
	}
}

func handleBuild(s *session, req msg.Message, _ []*os.File) (reply, error) {
	b := req.(*msg.Build)
	if b.Mode == msg.BuildModeRepair && !s.trusted {
		return answer(refuse("repairing is not allowed because you are not in 'trusted-users'")), nil
	}
	s.m.autoCollect(s.snap.set)
	r := newBuildRequest(s, b.Mode)
	defer r.abandon()
	r.sub = s.newSubst(r.set)
	r.sub.event = r.event
	r.sub.ctx = r.ctx
	defer r.sub.close()
	results := make(msg.BuildResultList, len(b.Targets))
	paths := make([]storepath.Path, len(b.Targets))
	for i, t := range b.Targets {
		p, err := s.path(t.Path)
		if err != nil {
			return reply{}, err
		}
		paths[i] = p
	}
	// Targets and, below, input derivations are realised concurrently: the
	// job slots (max-jobs) and build users bound what really runs.
	var wg sync.WaitGroup
	for i, t := range b.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = r.target(paths[i], t)
		}()
	}
	wg.Wait()
	return answer(&msg.BuildResults{Results: results}), nil
}

// target realises one target and says how it went.
func (r *buildRequest) target(p storepath.Path, t msg.BuildTarget) msg.BuildResult {
	m := r.s.m
	shown := m.store.dir.String(p)
	if !t.Built {
		var valid bool
		if err := m.store.with(func(db *storedb.DB) (e error) { valid, e = db.IsValid(p); return }); err != nil {
			return msg.BuildResult{Status: statusMiscFailure, ErrorMsg: "checking validity failed in privnixd"}
		}
		if valid && r.mode == msg.BuildModeRepair {
			return r.repairPath(p)
		}
		if valid {
			return msg.BuildResult{Status: statusAlreadyValid}
		}
		return r.substitutePath(p)
	}
	v, err := m.verifyDrv(p)
	if err != nil {
		return msg.BuildResult{Status: statusMiscFailure, ErrorMsg: r.s.drvMessage(err)}
	}
	wanted := t.Outputs
	if len(wanted) == 0 || slices.Contains(wanted, "*") {
		wanted = nil
		for _, o := range v.d.Outputs {
			wanted = append(wanted, o.Name)
		}
	}
	for _, w := range wanted {
		if _, ok := v.outputs[w]; !ok {
			return msg.BuildResult{Status: statusMiscFailure,
				ErrorMsg: fmt.Sprintf("derivation '%s' does not have wanted outputs '%s'", shown, w)}
		}
	}
	return r.result(v, r.realise(v, 0), wanted)
}

// result is the BuildResult of a target: its status, and the wanted
// outputs once they are valid.
func (r *buildRequest) result(v *verifiedDrv, o *outcome, wanted []string) msg.BuildResult {
	m := r.s.m
	res := msg.BuildResult{Status: o.status, ErrorMsg: trimText(o.msg)}
	if o.built {
		res.TimesBuilt = 1
		res.StartTime, res.StopTime = o.start.Unix(), o.stop.Unix()
	}
	if o.ok() {
		res.HashModulo = v.outHash.Base16()
		for _, w := range wanted {
			res.OutputNames = append(res.OutputNames, w)
			res.OutputPaths = append(res.OutputPaths, msg.StorePath(m.store.dir.String(v.outputs[w])))
		}
	}
	return res
}

// drvMessage is the text a client sees for a derivation that cannot be used.
func (s *session) drvMessage(err error) string {
	var de *drvErr
	if errors.As(err, &de) {
		return de.msg
	}
	s.log.Error("reading a derivation", "err", err)
	return "reading a derivation failed in privnixd; see its log"
}

// realise makes v's outputs valid: its input derivations first, then v
// itself if one of its outputs is missing (or, for a target, in check
// mode).
func (r *buildRequest) realise(v *verifiedDrv, depth int) *outcome {
	r.mu.Lock()
	if o := r.done[v.path]; o != nil {
		r.mu.Unlock()
		<-o.ready // the graph is acyclic: this ends
		return o
	}
	o := &outcome{ready: make(chan struct{})}
	r.done[v.path] = o
	r.mu.Unlock()
	defer close(o.ready)
	defer func() {
		if !o.ok() && !r.set.KeepGoing {
			r.abandon() // as nix-daemon: the first failure ends the request
		}
	}()
	mode := r.modeAt(depth)
	if r.outputsReady(v, mode, depth, o) {
		return o
	}
	if mode == msg.BuildModeNormal && r.substituteOutputs(v, o) {
		return o
	}
	ivs := make([]*verifiedDrv, len(v.d.InputDrvs))
	for i, in := range v.d.InputDrvs {
		ip, _ := r.s.m.store.dir.Parse(in.Path)
		iv, err := r.s.m.verifyDrv(ip)
		if err != nil {
			o.status, o.msg = statusMiscFailure, r.s.drvMessage(err)
			return o
		}
		ivs[i] = iv
	}
	if r.inputsFailed(v, ivs, depth, o) {
		return o
	}
	if r.ctx.Err() != nil {
		o.status, o.stopped = statusMiscFailure, true
		return o
	}
	r.build(v, mode, o)
	if !o.ok() && !o.stopped && depth > 0 {
		// Nix logs a dependency's failure where it happens; the target
		// reports "dependencies ... failed to build".
		r.event(msg.EventError, v.path, o.msg)
	}
	return o
}

// modeAt is the build mode of a derivation at depth: the request's for its
// targets; inputs are built normally (repair applies to them too, as Nix).
func (r *buildRequest) modeAt(depth int) uint64 {
	if depth == 0 || r.mode == msg.BuildModeRepair {
		return r.mode
	}
	return msg.BuildModeNormal
}

// outputsReady records v's outputs and says whether nothing is to be done
// (o is then final): all valid in normal mode, all good in repair mode, or
// an error.
func (r *buildRequest) outputsReady(v *verifiedDrv, mode uint64, depth int, o *outcome) bool {
	m := r.s.m
	if err := m.registerDrvOutputs(v); err != nil {
		o.status, o.msg = statusMiscFailure, "recording derivation outputs failed in privnixd"
		r.s.log.Error("recording derivation outputs", "err", err)
		return true
	}
	missing, err := m.missingOutputs(v)
	switch {
	case err != nil:
		o.status, o.msg = statusMiscFailure, "checking outputs failed in privnixd"
	case mode == msg.BuildModeCheck && len(missing) > 0:
		o.status = statusMiscFailure
		o.msg = fmt.Sprintf("some outputs of '%s' are not valid, so checking is not possible", yellow(m.store.dir.String(v.path)))
	case mode == msg.BuildModeNormal && len(missing) == 0:
		o.status = statusAlreadyValid
	case mode == msg.BuildModeRepair:
		return r.repairReady(v, missing, depth, o)
	default:
		return false
	}
	return true
}

// inputsFailed realises v's input derivations (at once: job slots and build
// users bound what runs) and says whether one failed (o is then final).
// Inputs stopped because of another failure do not count, as in Nix.
func (r *buildRequest) inputsFailed(v *verifiedDrv, ivs []*verifiedDrv, depth int, o *outcome) bool {
	m := r.s.m
	ios := make([]*outcome, len(ivs))
	var wg sync.WaitGroup
	for i := range ivs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ios[i] = r.realise(ivs[i], depth+1)
		}()
	}
	wg.Wait()
	failed, stopped := 0, false
	for i, in := range v.d.InputDrvs {
		iv, io := ivs[i], ios[i]
		if io.stopped {
			stopped = true
			continue
		}
		if !io.ok() {
			failed++
			continue
		}
		// The outputs used must be valid now.
		var used []storepath.Path
		for _, name := range in.Outputs {
			used = append(used, iv.outputs[name])
		}
		if missing, err := m.missingAmong(used); err != nil || len(missing) > 0 {
			failed++
		}
	}
	if failed > 0 {
		o.status = statusDependencyFailed
		o.msg = fmt.Sprintf("%s dependencies of derivation '%s' failed to build", yellow(fmt.Sprint(failed)), yellow(m.store.dir.String(v.path)))
		return true
	}
	if stopped {
		o.status, o.stopped = statusMiscFailure, true
		return true
	}
	return false
}

// missingOutputs returns v's outputs that are not valid.
func (m *Monitor) missingOutputs(v *verifiedDrv) ([]storepath.Path, error) {
	var outs []storepath.Path
	for _, p := range v.outputs {
		outs = append(outs, p)
	}
	return m.missingAmong(outs)
}

func (m *Monitor) missingAmong(ps []storepath.Path) ([]storepath.Path, error) {
	var valid []storepath.Path
	if err := m.store.with(func(db *storedb.DB) (e error) { valid, e = db.ValidAmong(ps); return }); err != nil {
		return nil, err
	}
	ok := map[storepath.Path]bool{}
	for _, p := range valid {
		ok[p] = true
	}
	var missing []storepath.Path
	for _, p := range ps {
		if !ok[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// build builds v: locks its outputs (another client may be building them:
// then they are valid when the lock comes and nothing is built), takes a job
// slot and a build user, and runs the build. Every wait ends when the
// request is abandoned.
func (r *buildRequest) build(v *verifiedDrv, mode uint64, o *outcome) {
	m := r.s.m
	defer m.builds.want(v.path)()
	var outs []storepath.Path
	var shown []string
	for _, p := range v.outputs {
		outs = append(outs, p)
		shown = append(shown, "'"+m.store.dir.String(p)+"'")
	}
	if m.builds.othersWant(v.path) {
		slices.Sort(shown)
		r.event(msg.EventWaiting, v.path, "waiting for lock on "+yellow(strings.Join(shown, ", ")))
	}
	unlock, ok := r.lockAll(outs)
	if !ok {
		o.status, o.stopped = statusMiscFailure, true
		return
	}
	defer unlock()
	if mode == msg.BuildModeNormal && r.outputsReady(v, mode, 0, o) {
		return
	}
	if r.set.MaxJobs == 0 {
		o.status = statusMiscFailure
		o.msg = "unable to start any build; either increase '--max-jobs' or enable remote builds.\nhttps://nixos.org/manual/nix/stable/advanced-topics/distributed-builds.html"
		return
	}
	if msg := checkPlatform(r.set, m.store.dir, v); msg != "" {
		o.status, o.msg = statusMiscFailure, msg
		return
	}
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-r.ctx.Done():
		o.status, o.stopped = statusMiscFailure, true
		return
	}
	u, err := m.builds.users.get(r.ctx.Done())
	if errors.Is(err, errAbandoned) {
		o.status, o.stopped = statusMiscFailure, true
		return
	} else if err != nil {
		o.status, o.msg = statusMiscFailure, err.Error()
		return
	}
	// What is left of the build's tree goes, then the user goes back after
	// kill(-1) as it (put; the build's PID namespace is gone once run
	// returns): DESIGN gives a uid back only once every tree it wrote is
	// sealed or deleted. The answer need not wait for either.
	cleanup := func() {}
	defer func() { go func() { cleanup(); m.builds.users.put(u) }() }()
	o.built = true
	o.start = time.Now()
	defer m.buildStarted(r.s, v.path, u, o.start)(o)
	cleanup = r.run(v, u, mode, o)
	o.stop = time.Now()
}

// lockAll takes the path locks of ps, unless the request is abandoned
// first (then the locks are released as soon as they come).
func (r *buildRequest) lockAll(ps []storepath.Path) (func(), bool) {
	got := make(chan func(), 1)
	go func() { got <- r.s.m.locks.lockMany(ps) }()
	select {
	case unlock := <-got:
		return unlock, true
	case <-r.ctx.Done():
		go func() { (<-got)() }()
		return nil, false
	}
}

// checkPlatform is Nix's platform check (6.9 step 2): the derivation's
// system is ours (or builtin, or an extra platform) and its
// requiredSystemFeatures are among system-features.
func checkPlatform(set *conf.Settings, dir storepath.Dir, v *verifiedDrv) string {
	system := set.System
	if system == "" {
		system = "x86_64-linux"
	}
	p := v.d.Platform
	required := requiredFeatures(v)
	missing := slices.ContainsFunc(required, func(f string) bool { return !slices.Contains(set.SystemFeatures, f) })
	if (p == system || p == "builtin" || slices.Contains(set.ExtraPlatforms, p)) && !missing {
		return ""
	}
	have := slices.Clone(set.SystemFeatures)
	slices.Sort(have)
	return fmt.Sprintf("a '%s' with features {%s} is required to build '%s', but I am a '%s' with features {%s}",
		yellow(p), strings.Join(required, ", "), yellow(dir.String(v.path)), yellow(system), strings.Join(have, ", "))
}

// requiredFeatures is the derivation's requiredSystemFeatures, sorted and
// without duplicates: a space-separated attribute, or a list of strings in
// structured attributes.
func requiredFeatures(v *verifiedDrv) []string {
	var out []string
	if js, ok := v.d.Getenv("__json"); ok {
		var attrs struct {
			Features []string `json:"requiredSystemFeatures"`
		}
		json.Unmarshal([]byte(js), &attrs) // not a list of strings: none, as a missing attribute
		out = attrs.Features
	} else if f, ok := v.d.Getenv("requiredSystemFeatures"); ok {
		out = strings.Fields(f)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sandboxFor decides the sandbox mode of v's build (6.9 step 5).
func sandboxFor(set *conf.Settings, dir storepath.Dir, v *verifiedDrv) (uint64, error) {
	noChroot, _ := v.d.Getenv("__noChroot")
	switch set.Sandbox {
	case conf.SandboxOff:
		return msg.SandboxOff, nil
	case conf.SandboxRelaxed:
		if v.kind == drv.FixedOutput || noChroot == "1" {
			return msg.SandboxOff, nil
		}
		return msg.SandboxOn, nil
	}
	if noChroot == "1" {
		return 0, fmt.Errorf("derivation '%s' has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'", dir.String(v.path))
	}
	return msg.SandboxOn, nil
}

// handleQueryMissing is Nix's queryMissing without substituters: every
// derivation with a missing wanted output would be built, with the inputs
// it needs; a missing path no derivation produces is unknown.
func handleQueryMissing(s *session, req msg.Message, _ []*os.File) (reply, error) {
	q := req.(*msg.QueryMissing)
	m := s.m
	out := &msg.Missing{}
	seen := map[storepath.Path]bool{}
	sub, subSeen := s.newSubst(s.settings()), map[storepath.Path]bool{} // substitute_build.go
	defer sub.close()
	unknown := func(p storepath.Path) {
		if !seen[p] {
			seen[p] = true
			out.Unknown = append(out.Unknown, msg.StorePath(m.store.dir.String(p)))
		}
	}
	var walk func(v *verifiedDrv, wanted []string, depth int) error
	walk = func(v *verifiedDrv, wanted []string, depth int) error {
		if seen[v.path] || depth > maxDrvDepth {
			return nil
		}
		var outs []storepath.Path
		for name, p := range v.outputs {
			if len(wanted) == 0 || slices.Contains(wanted, name) || slices.Contains(wanted, "*") {
				outs = append(outs, p)
			}
		}
		missing, err := m.missingAmong(outs)
		if err != nil || len(missing) == 0 || sub.willSubstitute(missing, out, subSeen) {
			return err
		}
		seen[v.path] = true
		out.WillBuild = append(out.WillBuild, msg.StorePath(m.store.dir.String(v.path)))
		for _, in := range v.d.InputDrvs {
			ip, _ := m.store.dir.Parse(in.Path)
			iv, err := m.verifyDrv(ip)
			if err != nil {
				unknown(ip)
				continue
			}
			if err := walk(iv, in.Outputs, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for _, t := range q.Targets {
		p, err := s.path(t.Path)
		if err != nil {
			return reply{}, err
		}
		if !t.Built {
			if missing, err := m.missingAmong([]storepath.Path{p}); err != nil {
				return s.failed("querying missing paths", err), nil
			} else if len(missing) > 0 && !sub.willSubstitute(missing, out, subSeen) {
				unknown(p)
			}
			continue
		}
		v, err := m.verifyDrv(p)
		if err != nil {
			unknown(p)
			continue
		}
		if err := walk(v, t.Outputs, 0); err != nil {
			return s.failed("querying missing paths", err), nil
		}
	}
	if len(out.WillBuild) > msg.MaxPaths || len(out.Unknown) > msg.MaxPaths || len(out.WillSubstitute) > msg.MaxPaths {
		return answer(&msg.Error{Class: msg.ClassPolicy, Message: "too many missing paths to list"}), nil
	}
	return answer(out), nil
}

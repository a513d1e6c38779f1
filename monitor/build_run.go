package monitor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"golang.org/x/sys/unix"

	"privnix/internal/narfs/dumpfs"
	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/monitor/storefs"
	"privnix/nix/conf"
	"privnix/nix/drv"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// run builds v as u and registers its outputs (in check mode, compares
// them with the valid ones); o gets the status.
//
// It returns the removal of the build's tree (its view, build directory and
// anything the builder left there), for the caller to run after the answer
// (on a tree privnixd stages as root 0700, which nothing else can reach).
func (r *buildRequest) run(v *verifiedDrv, u buildUser, mode uint64, o *outcome) (cleanup func()) {
	m := r.s.m
	shownDrv := m.store.dir.String(v.path)
	fail := func(status uint64, text string) { o.status, o.msg = status, text }
	internal := func(what string, err error) {
		r.s.log.Error("build failed in privnixd", "drv", shownDrv, "step", what, "err", err)
		fail(statusMiscFailure, fmt.Sprintf("building '%s' failed in privnixd (%s); see its log", shownDrv, what))
	}
	cleanup = func() {}
	b, err := m.prepareBuild(r.s, r.set, v, u)
	if err != nil {
		var de *drvErr
		if errors.As(err, &de) {
			fail(statusMiscFailure, de.msg)
			return
		}
		internal("preparing the build", err)
		return
	}
	cleanup = b.cleanup
	b.check, b.repair = mode == msg.BuildModeCheck, mode == msg.BuildModeRepair
	r.event(msg.EventStart, v.path, fmt.Sprintf(activityText[mode], shownDrv))
	defer r.event(msg.EventStop, v.path, "")
	logFile := m.openBuildLog(v.path)
	watch := buildWatch{abandon: r.ctx.Done(), othersWant: func() bool { return m.builds.othersWant(v.path) },
		log: r.s.log.With("drv", shownDrv)}
	res, err := m.runBuilder(b, logFile, watch, func(line string) { r.event(msg.EventLine, v.path, line) })
	if logFile != nil {
		logFile.Close()
	}
	if err != nil {
		internal("running the builder", err)
		return
	}
	defer func() {
		if !o.ok() && !o.stopped && res.failed == nil && b.set.KeepFailed {
			r.keepBuildDir(b)
		}
	}()
	if res.cancelled {
		r.s.audit.Info("build killed: its request was abandoned and no other waits for it", "drv", shownDrv, "uid", u.uid)
		o.status, o.stopped = statusMiscFailure, true
		return
	}
	if res.failed != nil {
		r.s.log.Warn("build sandbox set-up failed", "drv", shownDrv, "stage", res.failed.Stage, "errno", res.failed.Errno, "err", res.failed.Message)
		fail(statusMiscFailure, fmt.Sprintf("setting up the build environment of '%s' failed (%s)", shownDrv, res.failed.Stage))
		return
	}
	if res.timedOut != "" {
		fail(statusTimedOut, yellow(fmt.Sprintf("building of '%s' from .drv file", shownDrv))+" "+res.timedOut)
		return
	}
	if res.logLimit {
		fail(statusLogLimitExceeded, fmt.Sprintf("%s killed after writing more than %s bytes of log output",
			yellow(fmt.Sprintf("building of '%s' from .drv file", shownDrv)), yellow(fmt.Sprint(b.set.MaxBuildLogSize))))
		return
	}
	if !res.status.Exited() || res.status.ExitStatus() != 0 {
		text := fmt.Sprintf("builder for '%s' %s", yellow(shownDrv), statusText(res.status))
		if len(res.tail) > 0 {
			text += fmt.Sprintf(";\nlast %d log lines:\n", len(res.tail))
			for _, l := range res.tail {
				text += "> " + l + "\n"
			}
			text += fmt.Sprintf("For full logs, run '"+ansiBold+"nix log %s"+ansiNormal+"'.", shownDrv)
		}
		st := uint64(statusPermanentFailure)
		if v.kind == drv.FixedOutput {
			st = statusTransientFailure
		}
		fail(st, text)
		return
	}
	status, text, err := m.registerOutputs(r.s, b)
	if err != nil {
		internal("registering the outputs", err)
		return
	}
	fail(status, text)
	return
}

// activityText is the text of a build's activity, per build mode.
var activityText = map[uint64]string{
	msg.BuildModeNormal: "building '%s'",
	msg.BuildModeCheck:  "checking outputs of '%s'",
	msg.BuildModeRepair: "repairing outputs of '%s'",
}

// statusText is Nix's statusToString for a builder's wait status.
func statusText(ws syscall.WaitStatus) string {
	if ws.Exited() {
		return fmt.Sprintf("failed with exit code %d", ws.ExitStatus())
	}
	if ws.Signaled() {
		desc := unix.SignalName(ws.Signal())
		if s := ws.Signal().String(); s != "" {
			r := []rune(s)
			r[0] = unicode.ToUpper(r[0])
			desc = string(r)
		}
		return fmt.Sprintf("failed due to signal %d (%s)", int(ws.Signal()), desc)
	}
	return "died abnormally"
}

// preparedBuild is everything one build holds.
type preparedBuild struct {
	m       *Monitor
	set     *conf.Settings
	v       *verifiedDrv
	u       buildUser
	root    *storefs.Staging // the build root: root-owned 0700, holding store/ and build/
	view    *os.File         // <root>/store
	dir     *os.File         // <root>/build
	job     msg.BuildJob
	inputs  []storepath.Path // the input closure
	network bool
	check   bool // compare the outputs with the valid ones instead of registering them
	repair  bool // replace outputs that are valid (corrupted) with the rebuilt ones
	keep    bool // keep-failed: the build root stays (keepBuildDir)
}

// keepBuildDir is keep-failed (-K): a failed build's root is not removed
// and the client is told where its build directory is, as Nix 2.8 does.
// Unlike Nix 2.8 (which makes /tmp/nix-build-* 0755, still the build
// user's), it stays where it is: beneath the root-only staging directory,
// so only root can look at it, and no one can write into a tree a build
// user owns (CVE-2024-38531). It goes when privnixd next cleans the
// staging directory (a restart, or a store that was replaced).
func (r *buildRequest) keepBuildDir(b *preparedBuild) {
	b.keep = true
	dir := filepath.Join(r.s.m.cfg.Paths.StagingDir(), b.root.ID(), "build")
	r.event(msg.EventPlainError, b.v.path, fmt.Sprintf("note: keeping build directory '%s'", dir))
	r.s.log.Info("failed build directory kept", "drv", r.s.m.store.dir.String(b.v.path), "dir", dir)
}

func (b *preparedBuild) cleanup() {
	closeAll(b.view, b.dir)
	if b.keep {
		return
	}
	if err := b.root.Discard(); err != nil {
		b.m.log.Error("removing a build root failed", "staging", b.root.ID(), "err", err)
	}
}

// prepareBuild computes the build's job (6.9, 6.10) and creates its tree.
func (m *Monitor) prepareBuild(s *session, set *conf.Settings, v *verifiedDrv, u buildUser) (*preparedBuild, error) {
	dir := m.store.dir
	shownDrv := dir.String(v.path)
	if strings.HasPrefix(v.d.Builder, "builtin:") {
		return nil, drvFail(errUnsupportedDrv, "derivation '%s' uses the builder '%s', which privnix does not have yet", shownDrv, v.d.Builder)
	}
	if err := msg.ValidAbsPath(v.d.Builder); err != nil {
		return nil, drvFail(errBadDrv, "derivation '%s': builder '%s' is not an absolute path", shownDrv, v.d.Builder)
	}
	sandbox, err := sandboxFor(set, dir, v)
	if err != nil {
		return nil, drvFail(errBadDrv, "%v", err)
	}
	inputs, err := m.inputClosure(v)
	if err != nil {
		return nil, err
	}
	for _, p := range inputs {
		m.roots.addTemp(s, p)
	}
	// Outputs left in the store by an earlier, unregistered attempt go.
	for _, p := range v.outputs {
		if missing, err := m.missingAmong([]storepath.Path{p}); err == nil && len(missing) == 1 {
			if ok, _ := m.store.files().Exists(p.Base()); ok {
				if err := m.store.files().Delete(p.Base()); err != nil {
					return nil, err
				}
			}
		}
	}
	b := &preparedBuild{m: m, set: set, v: v, u: u, inputs: inputs, network: v.kind == drv.FixedOutput}
	if b.root, err = m.store.files().NewStaging(u.uid, u.gid); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			b.cleanup()
		}
	}()
	rfd := int(b.root.Dir().Fd())
	owner := 0 // privnixd's own uid when it is not root: the directory is its already
	if !m.root {
		owner = -1
	}
	if err := errors.Join(unix.Fchown(rfd, owner, owner), unix.Fchmod(rfd, 0o700)); err != nil {
		return nil, err
	}
	if err := unix.Mkdirat(rfd, "store", 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mkdirat(rfd, "build", 0o700); err != nil {
		return nil, err
	}
	if err := errors.Join(unix.Fchmodat(rfd, "store", 0o755, 0), unix.Fchownat(rfd, "build", int(u.uid), int(u.gid), unix.AT_SYMLINK_NOFOLLOW),
		unix.Fchmodat(rfd, "build", 0o700, 0)); err != nil {
		return nil, err
	}
	for _, sub := range []struct {
		name string
		f    **os.File
	}{{"store", &b.view}, {"build", &b.dir}} {
		fd, err := unix.Openat(rfd, sub.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		*sub.f = os.NewFile(uintptr(fd), sub.name)
	}

	top := "/build"
	if sandbox == msg.SandboxOff {
		top = "/tmp/nix-build-" + v.path.Name() + "-0"
	}
	env := map[string]string{
		"PATH":            "/path-not-set",
		"HOME":            "/homeless-shelter",
		"NIX_STORE":       string(dir),
		"NIX_BUILD_CORES": fmt.Sprint(set.Cores),
	}
	var files msg.BuildFiles
	passAsFile := map[string]bool{}
	if pf, ok := v.d.Getenv("passAsFile"); ok {
		for _, n := range strings.FieldsFunc(pf, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
			passAsFile[n] = true
		}
	}
	structured, isStructured := v.d.Getenv("__json")
	if isStructured {
		// The derivation's attributes reach the builder only as files.
		outs := map[string]string{}
		for n, p := range v.outputs {
			outs[n] = dir.String(p)
		}
		js, sh, err := structuredAttrs(structured, outs)
		if err != nil {
			return nil, drvFail(errBadDrv, "derivation '%s': %v", shownDrv, err)
		}
		files = append(files, chunkFile(".attrs.json", js)...)
		files = append(files, chunkFile(".attrs.sh", sh)...)
		env["NIX_ATTRS_JSON_FILE"] = top + "/.attrs.json"
		env["NIX_ATTRS_SH_FILE"] = top + "/.attrs.sh"
	}
	for _, e := range v.d.Env {
		if isStructured {
			break
		}
		if !passAsFile[e.Key] {
			env[e.Key] = e.Value
			continue
		}
		fn := ".attr-" + nixhash.Sum(nixhash.SHA256, []byte(e.Key)).Nix32()
		files = append(files, chunkFile(fn, e.Value)...)
		env[e.Key+"Path"] = top + "/" + fn
	}
	for _, k := range []string{"NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"} {
		env[k] = top
	}
	if v.kind == drv.FixedOutput {
		env["NIX_OUTPUT_CHECKED"] = "1"
		if iv, ok := v.d.Getenv("impureEnvVars"); ok {
			for _, n := range strings.Fields(iv) {
				env[n] = m.cfg.Getenv(n)
			}
		}
	}
	env["NIX_LOG_FD"] = "2"
	env["TERM"] = "xterm-256color"
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	kvs := make(msg.KVs, 0, len(keys))
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "=\x00") || len(k) > msg.MaxShort {
			return nil, drvFail(errBadDrv, "derivation '%s' has an environment variable privnix cannot pass: %q", shownDrv, k)
		}
		kvs = append(kvs, msg.KV{Key: k, Value: env[k]})
	}
	var outs msg.BuildOutputs
	for _, o := range v.d.Outputs {
		outs = append(outs, msg.BuildOutput{Name: o.Name, Path: msg.StorePath(dir.String(v.outputs[o.Name]))})
	}
	var inPaths msg.StorePaths
	for _, p := range inputs {
		inPaths = append(inPaths, msg.StorePath(dir.String(p)))
	}
	var sp msg.SandboxPathList
	if sandbox == msg.SandboxOn {
		for _, e := range set.SandboxPaths {
			optional := strings.HasSuffix(e, "?")
			e = strings.TrimSuffix(e, "?")
			target, source, found := strings.Cut(e, "=")
			if !found {
				source = target
			}
			sp = append(sp, msg.SandboxPath{Target: target, Source: source, Optional: optional})
		}
	}
	if u.shared {
		u.uid, u.gid = sandboxUID, sandboxGID // as the build sees itself (6.9: Nix's uid 1000, gid 100)
	}
	b.job = msg.BuildJob{
		Builder: v.d.Builder, Args: msg.Strings(v.d.Args), Env: kvs, InputPaths: inPaths, Outputs: outs,
		StoreDir: string(dir), UID: u.uid, GID: u.gid, Sandbox: sandbox, SandboxPaths: sp, UserNS: u.shared,
		Network: b.network, BuildTop: top, Files: files,
	}
	ok = true
	return b, nil
}

// inputClosure is the closure of v's input sources and of the outputs it
// uses from its input derivations (all valid by now).
func (m *Monitor) inputClosure(v *verifiedDrv) ([]storepath.Path, error) {
	var roots []storepath.Path
	for _, s := range v.d.InputSrcs {
		p, err := m.store.dir.Parse(s)
		if err != nil {
			return nil, err
		}
		roots = append(roots, p)
	}
	for _, in := range v.d.InputDrvs {
		ip, _ := m.store.dir.Parse(in.Path)
		iv := m.builds.drvs.get(ip)
		if iv == nil {
			return nil, fmt.Errorf("input derivation %s not verified", ip.Base())
		}
		for _, o := range in.Outputs {
			roots = append(roots, iv.outputs[o])
		}
	}
	return m.closure(roots)
}

// closure returns roots and everything they reference, transitively.
func (m *Monitor) closure(roots []storepath.Path) ([]storepath.Path, error) {
	seen := map[storepath.Path]bool{}
	var out []storepath.Path
	todo := roots
	for len(todo) > 0 {
		var batch []storepath.Path
		for _, p := range todo {
			if !seen[p] {
				seen[p] = true
				batch = append(batch, p)
			}
		}
		todo = nil
		if len(batch) == 0 {
			break
		}
		var infos map[storepath.Path]storedb.PathInfo
		if err := m.store.with(func(db *storedb.DB) (e error) { infos, e = db.PathInfos(batch); return }); err != nil {
			return nil, err
		}
		for _, p := range batch {
			info, ok := infos[p]
			if !ok {
				return nil, fmt.Errorf("input %s is not valid", p.Base())
			}
			out = append(out, p)
			todo = append(todo, info.References...)
		}
	}
	slices.SortFunc(out, func(a, b storepath.Path) int { return strings.Compare(a.Base(), b.Base()) })
	return out, nil
}

// builderResult is what one run of privnix-build gave.
type builderResult struct {
	failed *msg.SandboxFailed
	status syscall.WaitStatus
	tail   []string // the last log-lines lines
	// logLimit: killed for writing more than max-build-log-size bytes
	logLimit bool
	// timedOut: killed for timeout or max-silent-time (the end of Nix's message)
	timedOut   string
	lastOutput atomic.Int64 // unix ns of the last bytes read from the log
	// cancelled: killed because its request was abandoned
	cancelled bool
}

// buildWatch says when a build is no longer wanted: its request was
// abandoned and no other request waits for the same derivation.
type buildWatch struct {
	abandon    <-chan struct{}
	othersWant func() bool
	log        *slog.Logger
}

// runBuilder starts privnix-build as root from the build spawner, hands it
// the job, forwards the log and waits for the builder's exit status.
func (m *Monitor) runBuilder(b *preparedBuild, logFile *os.File, watch buildWatch, onLine func(string)) (*builderResult, error) {
	if _, ok := m.buildSpawner.bins[roleBuild]; !ok {
		return nil, fmt.Errorf("privnix-build is not installed in %s", m.cfg.BinDir)
	}
	c, err := m.buildprocs.take(b.network)
	if err != nil {
		return nil, err
	}
	defer c.kill()
	if err := c.conn.SetStoreDir(b.job.StoreDir); err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	first, more := splitJob(b.job)
	first.More = len(more) > 0
	err = c.conn.Send(&first, b.view, b.dir, pw)
	pw.Close()
	for i := 0; err == nil && i < len(more); i++ {
		more[i].More = i < len(more)-1
		err = c.conn.Send(&more[i])
	}
	if err != nil {
		return nil, fmt.Errorf("sending the build job: %w", err)
	}
	res := &builderResult{}
	res.lastOutput.Store(time.Now().UnixNano())
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		readLog(pr, int(b.set.LogLines), b.set.MaxBuildLogSize, logFile, res, onLine, func() {
			res.logLimit = true
			c.sigkill()
		})
	}()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	ans, fds, err := c.conn.Recv()
	closeFiles(fds)
	if err == nil {
		if f, ok := ans.(*msg.SandboxFailed); ok {
			res.failed = f
		}
	}
	waitBuilder(c, b.set, res, watch)
	// The builder was PID 1 of its namespace: everything it started is gone,
	// so the log pipe's last writer closed.
	select {
	case <-logDone:
	case <-time.After(10 * time.Second):
		pr.Close()
		<-logDone
	}
	if ps := c.cmd.ProcessState; ps != nil {
		res.status = ps.Sys().(syscall.WaitStatus)
	}
	return res, nil
}

// waitBuilder waits for the end of the builder. Timeout, max-silent-time
// and an unwanted build end the whole build (its PID namespace).
func waitBuilder(c *child, set *conf.Settings, res *builderResult, watch buildWatch) {
	var timeout <-chan time.Time
	if set.Timeout > 0 {
		timeout = time.After(time.Duration(set.Timeout) * time.Second)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	abandoned := false
	for {
		select {
		case <-c.done:
			return
		case <-timeout:
			res.timedOut = fmt.Sprintf("timed out after %s seconds", yellow(fmt.Sprint(set.Timeout)))
			c.kill()
			return
		case <-watch.abandon:
			watch.abandon, abandoned = nil, true
			if watch.othersWant() {
				watch.log.Info("build goes on: its request was abandoned, another waits for it")
			}
		case <-tick.C:
			if set.MaxSilentTime > 0 && time.Since(time.Unix(0, res.lastOutput.Load())) > time.Duration(set.MaxSilentTime)*time.Second {
				res.timedOut = fmt.Sprintf("timed out after %s seconds of silence", yellow(fmt.Sprint(set.MaxSilentTime)))
				c.kill()
				return
			}
		}
		if abandoned && !watch.othersWant() {
			res.cancelled = true
			c.kill()
			return
		}
	}
}

// readLog splits the builder's output into lines as Nix does (a CR moves
// back to the start of the line), keeping the last n lines, and writes the
// raw bytes to logFile (if not nil). Past maxSize bytes (if not 0) it calls
// kill once.
func readLog(f *os.File, n int, maxSize uint64, logFile *os.File, res *builderResult, onLine func(string), kill func()) {
	var total uint64
	var cur []byte
	pos := 0
	emit := func() {
		line := string(cur)
		cur, pos = cur[:0], 0
		onLine(line)
		if n > 0 {
			res.tail = append(res.tail, line)
			if len(res.tail) > n {
				res.tail = res.tail[1:]
			}
		}
	}
	buf := make([]byte, 32<<10)
	for {
		k, err := f.Read(buf)
		res.lastOutput.Store(time.Now().UnixNano())
		total += uint64(k)
		if maxSize > 0 && total > maxSize && !res.logLimit {
			kill()
		}
		if logFile != nil && k > 0 {
			if _, err := logFile.Write(buf[:k]); err != nil {
				logFile = nil // the log directory is full: the build goes on
			}
		}
		for _, c := range buf[:k] {
			switch c {
			case '\r':
				pos = 0
			case '\n':
				emit()
			default:
				if pos < len(cur) {
					cur[pos] = c
				} else if len(cur) < msg.MaxText {
					cur = append(cur, c)
				}
				pos++
			}
		}
		if err != nil {
			break
		}
	}
	if len(cur) > 0 {
		emit()
	}
}

// splitJob cuts a job whose lists do not fit one frame into a BuildJob and
// BuildJobMore messages.
func splitJob(j msg.BuildJob) (msg.BuildJob, []msg.BuildJobMore) {
	const budget = 96 << 10
	first := j
	first.Env, first.InputPaths, first.Files = nil, nil, nil
	size := len(j.Builder) + 4096
	for _, a := range j.Args {
		size += len(a) + 8
	}
	var more []msg.BuildJobMore
	room := func(n int) {
		if size+n > budget {
			more = append(more, msg.BuildJobMore{})
			size = 64
		}
		size += n
	}
	for _, kv := range j.Env {
		room(len(kv.Key) + len(kv.Value) + 8)
		if len(more) == 0 {
			first.Env = append(first.Env, kv)
		} else {
			more[len(more)-1].Env = append(more[len(more)-1].Env, kv)
		}
	}
	for _, p := range j.InputPaths {
		room(len(p) + 4)
		if len(more) == 0 {
			first.InputPaths = append(first.InputPaths, p)
		} else {
			more[len(more)-1].InputPaths = append(more[len(more)-1].InputPaths, p)
		}
	}
	for _, f := range j.Files {
		room(len(f.Name) + len(f.Data) + 8)
		if len(more) == 0 {
			first.Files = append(first.Files, f)
		} else {
			more[len(more)-1].Files = append(more[len(more)-1].Files, f)
		}
	}
	return first, more
}

// openBuildLog creates the file the raw log goes to, where nix-store -l
// looks (<log dir>/drvs/<2 chars>/<rest of the base name>), replacing an
// earlier build's; nil (logged) if it cannot.
func (m *Monitor) openBuildLog(drvPath storepath.Path) *os.File {
	if m.current().set.Other["keep-build-log"] == "false" {
		return nil
	}
	base := drvPath.Base()
	dir := filepath.Join(m.cfg.Paths.LogDir, "drvs", base[:2])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		m.log.Warn("cannot write a build log", "err", err)
		return nil
	}
	p := filepath.Join(dir, base[2:])
	os.Remove(p)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o444)
	if err != nil {
		m.log.Warn("cannot write a build log", "err", err)
		return nil
	}
	return f
}

// registerOutputs seals each output the builder left in the store view and
// registers them all valid (6.11). It returns the build's status.
func (m *Monitor) registerOutputs(s *session, b *preparedBuild) (uint64, string, error) {
	dir := m.store.dir
	v := b.v
	shownDrv := dir.String(v.path)
	var cands []string
	byHash := map[string]storepath.Path{}
	for _, p := range b.inputs {
		cands = append(cands, p.HashPart())
		byHash[p.HashPart()] = p
	}
	for _, p := range v.outputs {
		cands = append(cands, p.HashPart())
		byHash[p.HashPart()] = p
	}
	type sealedOut struct {
		info  storedb.PathInfo
		stage *storefs.Staging
	}
	var sealed []sealedOut
	defer func() {
		for _, so := range sealed {
			so.stage.Discard()
		}
	}()
	status, text := uint64(statusBuilt), ""
	vfd := int(b.view.Fd())
	for _, o := range v.d.Outputs {
		p := v.outputs[o.Name]
		var st unix.Stat_t
		if err := unix.Fstatat(vfd, p.Base(), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return statusPermanentFailure, fmt.Sprintf("builder for '%s' failed to produce output path for output '%s' at '%s'",
				yellow(shownDrv), yellow(o.Name), yellow(dir.String(p))), nil
		}
		stage, err := m.store.files().NewStaging(b.u.uid, b.u.gid)
		if err != nil {
			return 0, "", err
		}
		sealed = append(sealed, sealedOut{stage: stage})
		if err := unix.Renameat(vfd, p.Base(), int(stage.Dir().Fd()), storefs.OutName); err != nil {
			return 0, "", err
		}
		opts := storefs.SealOptions{WriterUID: b.u.uid, Candidates: cands, Copy: b.network}
		var oi drv.OutputInfo
		if v.kind == drv.FixedOutput {
			oi = v.infos[0]
			if oi.Method == storepath.Flat {
				opts.FlatAlgo = oi.Algo
				if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o100 != 0 {
					return statusOutputRejected, fmt.Sprintf("output path '%s' should be a non-executable regular file since recursive hashing is not enabled (outputHashMode=flat)",
						yellow(dir.String(p))), nil
				}
			}
		}
		res, err := stage.Seal(opts)
		if err != nil {
			if errors.Is(err, storefs.ErrRefused) {
				s.audit.Warn("build output refused", "drv", shownDrv, "output", o.Name, "err", err)
				return statusOutputRejected, fmt.Sprintf("output '%s' of '%s' was refused: %v", yellow(o.Name), yellow(shownDrv), err), nil
			}
			return 0, "", err
		}
		info := storedb.PathInfo{Path: p, NarHash: res.NarHash, NarSize: res.NarSize, Deriver: v.path, Ultimate: true}
		for _, h := range res.Found {
			info.References = append(info.References, byHash[h])
		}
		slices.SortFunc(info.References, func(a, b storepath.Path) int { return strings.Compare(a.Base(), b.Base()) })
		if v.kind == drv.FixedOutput {
			got := res.FlatHash
			if oi.Method == storepath.Recursive {
				if got, err = sealedNarHash(stage, oi.Algo, res); err != nil {
					return 0, "", err
				}
			}
			if len(info.References) > 0 {
				return statusOutputRejected, fmt.Sprintf("fixed-output derivations must not reference store paths: '%s' references %d distinct paths, e.g. '%s'",
					yellow(shownDrv), len(info.References), yellow(dir.String(info.References[0]))), nil
			}
			info.CA = storepath.ContentAddress{Method: oi.Method, Hash: got}.String()
			if !got.Equal(oi.Hash) {
				// Nix registers the output at its real path, then fails.
				if info.Path, err = dir.MakeFixedOutput(v.name, oi.Method, got, nil, false); err != nil {
					return 0, "", err
				}
				status = statusOutputRejected
				text = fmt.Sprintf("hash mismatch in fixed-output derivation '%s':\n  specified: %s\n     got:    %s",
					yellow(shownDrv), yellow(oi.Hash.SRI()), yellow(got.SRI()))
			}
		}
		sealed[len(sealed)-1].info = info
	}
	infos := make([]storedb.PathInfo, 0, len(sealed))
	for _, so := range sealed {
		infos = append(infos, so.info)
	}
	if text := outputCycle(dir, v, infos); text != "" {
		return statusOutputRejected, text, nil
	}
	if text, err := m.checkOutputRefs(v, infos); err != nil || text != "" {
		return statusOutputRejected, text, err
	}
	if b.check {
		if status != statusBuilt {
			return status, text, nil
		}
		return m.compareOutputs(s.snap, v, infos)
	}
	s.snap.signBuilt(dir, infos)
	err := m.store.with(func(db *storedb.DB) error {
		var todo []storedb.PathInfo
		for i, so := range sealed {
			if ok, err := db.IsValid(so.info.Path); err != nil {
				return err
			} else if ok && b.repair {
				if err := replaceValid(m.store.files(), so.stage, db, so.info); err != nil {
					return err
				}
				continue
			} else if ok {
				continue // a mismatching fixed output already there
			}
			if err := db.MarkPending(so.info.Path); err != nil {
				return err
			}
			if err := so.stage.Commit(so.info.Path.Base()); err != nil {
				db.ClearPending(so.info.Path)
				return err
			}
			todo = append(todo, infos[i])
		}
		if len(todo) == 0 {
			return nil
		}
		return db.RegisterValid(todo, nil)
	})
	if err != nil {
		return 0, "", err
	}
	for _, info := range infos {
		m.roots.addTemp(s, info.Path)
		s.audit.Info("build output registered", "drv", shownDrv, "path", dir.String(info.Path), "nar_size", info.NarSize)
		m.autoOptimise(s.snap.set, info.Path)
	}
	return status, text, nil
}

// compareOutputs is --check (6.11 step 4): each rebuilt output must have
// the NAR hash of the valid one; then the valid ones are marked ultimate,
// as Nix does. Nothing rebuilt is kept.
func (m *Monitor) compareOutputs(sn *snapshot, v *verifiedDrv, rebuilt []storedb.PathInfo) (uint64, string, error) {
	dir := m.store.dir
	err := m.store.with(func(db *storedb.DB) error {
		var mark []storedb.PathInfo
		for _, r := range rebuilt {
			old, ok, err := db.PathInfo(r.Path)
			if err != nil {
				return err
			}
			if !ok || !old.NarHash.Equal(r.NarHash) {
				return &drvErr{msg: fmt.Sprintf("derivation '%s' may not be deterministic: output '%s' differs",
					yellow(dir.String(v.path)), yellow(dir.String(r.Path)))}
			}
			if !old.Ultimate {
				old.Ultimate = true
				mark = append(mark, old)
			}
		}
		if len(mark) == 0 {
			return nil
		}
		sn.signBuilt(dir, mark)
		return db.RegisterValid(mark, nil)
	})
	var de *drvErr
	if errors.As(err, &de) {
		return statusNotDeterministic, de.msg, nil
	}
	if err != nil {
		return 0, "", err
	}
	return statusBuilt, "", nil
}

// sealedNarHash is the NAR hash of a sealed output with algo.
func sealedNarHash(st *storefs.Staging, algo nixhash.Algo, res storefs.Sealed) (nixhash.Hash, error) {
	if algo == nixhash.SHA256 {
		return res.NarHash, nil
	}
	h := algo.New()
	if err := dumpfs.Dump(h, int(st.Dir().Fd()), st.SealedName()); err != nil {
		return nixhash.Hash{}, err
	}
	return nixhash.Hash{Algo: algo, Digest: h.Sum(nil)}, nil
}

// checkOutputRefs applies allowedReferences, allowedRequisites,
// disallowedReferences and disallowedRequisites (6.11) to each output; it
// returns Nix's message for the first violation ("" if none).
func (m *Monitor) checkOutputRefs(v *verifiedDrv, infos []storedb.PathInfo) (string, error) {
	dir := m.store.dir
	byPath := map[storepath.Path]storedb.PathInfo{}
	for _, i := range infos {
		byPath[i.Path] = i
	}
	// closure of an output: through this build's outputs, then the database.
	closure := func(p storepath.Path) (map[storepath.Path]bool, error) {
		seen := map[storepath.Path]bool{}
		var valid []storepath.Path
		todo := []storepath.Path{p}
		for len(todo) > 0 {
			q := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if seen[q] {
				continue
			}
			seen[q] = true
			if i, ok := byPath[q]; ok {
				todo = append(todo, i.References...)
			} else {
				valid = append(valid, q)
			}
		}
		more, err := m.closure(valid)
		for _, q := range more {
			seen[q] = true
		}
		return seen, err
	}
	for _, info := range infos {
		for _, c := range []struct {
			attr               string
			allowed, recursive bool
		}{
			{"allowedReferences", true, false}, {"allowedRequisites", true, true},
			{"disallowedReferences", false, false}, {"disallowedRequisites", false, true},
		} {
			val, ok := v.d.Getenv(c.attr)
			if !ok {
				continue
			}
			spec := map[storepath.Path]bool{}
			for _, tok := range strings.Fields(val) {
				if p, err := dir.Parse(tok); err == nil {
					spec[p] = true
				} else if p, ok := v.outputs[tok]; ok {
					spec[p] = true
				} else {
					return fmt.Sprintf("derivation contains an illegal reference specifier '%s'", yellow(tok)), nil
				}
			}
			used := map[storepath.Path]bool{}
			if c.recursive {
				var err error
				if used, err = closure(info.Path); err != nil {
					return "", err
				}
				delete(used, info.Path)
			} else {
				for _, r := range info.References {
					used[r] = true
				}
			}
			var bad []string
			for p := range used {
				if spec[p] != c.allowed {
					bad = append(bad, dir.String(p))
				}
			}
			if len(bad) > 0 {
				slices.Sort(bad)
				return fmt.Sprintf("output '%s' is not allowed to refer to the following paths:%s",
					yellow(dir.String(info.Path)), yellow("\n  "+strings.Join(bad, "\n  "))), nil
			}
		}
	}
	return "", nil
}

// chunkFile cuts a build file into chunks that each fit a frame.
func chunkFile(name, data string) msg.BuildFiles {
	var out msg.BuildFiles
	for {
		chunk := data[:min(len(data), 64<<10)]
		out = append(out, msg.BuildFile{Name: name, Data: chunk})
		if data = data[len(chunk):]; data == "" {
			return out
		}
	}
}

// outputCycle is Nix's topoSort of a build's outputs by their references to
// each other: it returns Nix's message for the first cycle its depth-first
// walk (outputs in name order) meets, or "".
func outputCycle(dir storepath.Dir, v *verifiedDrv, infos []storedb.PathInfo) string {
	nameOf := map[storepath.Path]string{}
	for n, p := range v.outputs {
		nameOf[p] = n
	}
	children := map[string][]string{}
	var names []string
	for _, i := range infos {
		n, ok := nameOf[i.Path]
		if !ok {
			continue // a mismatching fixed output, registered at its real path
		}
		names = append(names, n)
		for _, r := range i.References {
			if c, ok := nameOf[r]; ok && c != n {
				children[n] = append(children[n], c)
			}
		}
		slices.Sort(children[n])
	}
	slices.Sort(names)
	visited, parents := map[string]bool{}, map[string]bool{}
	var visit func(n, parent string) string
	visit = func(n, parent string) string {
		if parents[n] {
			return fmt.Sprintf("cycle detected in build of '%s' in the references of output '%s' from output '%s'",
				yellow(dir.String(v.path)), yellow(n), yellow(parent))
		}
		if visited[n] {
			return ""
		}
		visited[n] = true
		parents[n] = true
		for _, c := range children[n] {
			if msg := visit(c, n); msg != "" {
				return msg
			}
		}
		delete(parents, n)
		return ""
	}
	for _, n := range names {
		if msg := visit(n, ""); msg != "" {
			return msg
		}
	}
	return ""
}

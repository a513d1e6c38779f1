package monitor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/nix/drv"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// Derivations enter the monitor as DESIGN.md says: the monitor reads the
// .drv file itself (root-owned, canonical, valid), a storeproc parses it and
// sends the structure back, and the monitor prints that structure with
// nix/drv and requires the file's bytes. It then checks that the file is at
// the path its text gives (so a path names one derivation for ever: the memo
// below is keyed by path) and recomputes every output path from
// hashDerivationModulo over input derivations verified the same way,
// bottom-up. A derivation whose declared outputs differ is refused.

// verifiedDrv is a derivation the monitor printed and checked itself.
type verifiedDrv struct {
	path    storepath.Path
	name    string // the derivation name (without .drv)
	d       *drv.Derivation
	kind    drv.Kind
	infos   []drv.OutputInfo
	hashMod nixhash.Hash              // unmasked hash modulo, what referrers hash in
	outHash nixhash.Hash              // masked hash modulo: names the outputs' realisations
	outputs map[string]storepath.Path // output name → path
	// inline: handed over by BuildDerivation (build_inline.go), not read
	// from the store: never memoised, its outputs not recorded
	inline bool
}

// drvMemo holds every derivation verified since the monitor started.
type drvMemo struct {
	mu sync.Mutex
	m  map[storepath.Path]*verifiedDrv // guarded by mu
}

func (dm *drvMemo) get(p storepath.Path) *verifiedDrv {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return dm.m[p]
}

func (dm *drvMemo) put(v *verifiedDrv) {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	if len(dm.m) > 1<<18 {
		dm.m = map[storepath.Path]*verifiedDrv{}
	}
	dm.m[v.path] = v
}

// maxDrvDepth bounds the input-derivation nesting of one verification walk.
const maxDrvDepth = 4096

// drvParser is one storeproc that parses every derivation of a walk.
type drvParser struct {
	m *Monitor
	w *child
}

func (p *drvParser) close() {
	if p.w != nil {
		p.m.releaseWorker(p.w)
		p.w = nil
	}
}

// parse hands text to the storeproc and assembles its answer.
func (p *drvParser) parse(text []byte) (*drv.Derivation, error) {
	if p.w == nil {
		w, err := p.m.startWorker()
		if err != nil {
			return nil, err
		}
		p.w = w
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	err = p.w.conn.Send(&msg.ParseDrv{MaxSize: msg.MaxDrvSize, SharedUID: !p.m.root}, pr)
	pr.Close()
	if err != nil {
		pw.Close()
		p.close()
		return nil, err
	}
	go func() { pw.Write(text); pw.Close() }()
	d := &drv.Derivation{}
	p.w.conn.SetReadDeadline(time.Now().Add(time.Minute))
	for first := true; ; first = false {
		m, fds, err := p.w.conn.Recv()
		closeFiles(fds)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("the derivation parser: %w", err)
		}
		switch a := m.(type) {
		case *msg.Error:
			return nil, a
		case *msg.Drv:
			if first {
				d.Platform, d.Builder = a.Platform, a.Builder
			} else if a.Platform != "" || a.Builder != "" {
				p.close()
				return nil, fmt.Errorf("the derivation parser sent a platform in a continuation")
			}
			appendDrvPart(d, a)
			if !a.More {
				return d, nil
			}
		default:
			p.close()
			return nil, fmt.Errorf("the derivation parser answered %v", m.Kind())
		}
	}
}

// appendDrvPart adds a Drv part's lists to d; an env entry with the key of
// the entry before it continues its value.
func appendDrvPart(d *drv.Derivation, a *msg.Drv) {
	for _, o := range a.Outputs {
		d.Outputs = append(d.Outputs, drv.Output{Name: o.Name, Path: o.Path, HashAlgo: o.HashAlgo, Hash: o.Hash})
	}
	for _, in := range a.InputDrvs {
		d.InputDrvs = append(d.InputDrvs, drv.InputDrv{Path: in.Path, Outputs: append([]string{}, in.Outputs...)})
	}
	d.InputSrcs = append(d.InputSrcs, a.InputSrcs...)
	d.Args = append(d.Args, a.Args...)
	for _, kv := range a.Env {
		if n := len(d.Env); n > 0 && d.Env[n-1].Key == kv.Key {
			d.Env[n-1].Value += kv.Value
			continue
		}
		d.Env = append(d.Env, drv.EnvVar{Key: kv.Key, Value: kv.Value})
	}
	if d.InputDrvs == nil {
		d.InputDrvs = []drv.InputDrv{}
	}
}

// readDrvFile reads a valid .drv from the store, through the store
// directory, never following a symlink, at most msg.MaxDrvSize bytes.
func (m *Monitor) readDrvFile(p storepath.Path) ([]byte, error) {
	dfd, err := unix.Open(string(m.store.dir), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat2(dfd, p.Base(), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), p.Base())
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != uint32(os.Geteuid()) || st.Mode&0o222 != 0 {
		return nil, fmt.Errorf("%s is not a canonical regular file", p.Base())
	}
	if st.Size > msg.MaxDrvSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", p.Base(), msg.MaxDrvSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, msg.MaxDrvSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > msg.MaxDrvSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", p.Base(), msg.MaxDrvSize)
	}
	return b, nil
}

// errBadDrv wraps every refusal of a derivation that is not what it claims.
var errBadDrv = errors.New("derivation refused")

// verifyDrv returns the verified derivation at p (a valid .drv), verifying
// it and its input derivations, bottom-up, if not memoised.
func (m *Monitor) verifyDrv(p storepath.Path) (*verifiedDrv, error) {
	// A memoised derivation is still what its path names, but the store may
	// have been replaced since (storeState.refresh): it must be valid now.
	if v := m.builds.drvs.get(p); v != nil {
		var valid bool
		if err := m.store.with(func(db *storedb.DB) (e error) { valid, e = db.IsValid(p); return }); err != nil {
			return nil, err
		}
		if !valid {
			return nil, drvFail(errNotValidDrv, "path '%s' is not valid", m.store.dir.String(p))
		}
		return v, nil
	}
	// One parser serves every walk: spawning a storeproc per .drv would cost
	// more than parsing it. Reusing it is safe for integrity: whatever a
	// parser says is printed back and compared with the file, so a parser
	// subverted by one .drv can make others be refused, never accepted.
	b := m.builds
	b.parserMu.Lock()
	defer b.parserMu.Unlock()
	if v := m.builds.drvs.get(p); v != nil {
		return v, nil
	}
	if b.parser == nil {
		b.parser = &drvParser{m: m}
	}
	return m.verifyDrvWith(b.parser, p, map[storepath.Path]bool{}, 0)
}

func (m *Monitor) verifyDrvWith(parser *drvParser, p storepath.Path, walking map[storepath.Path]bool, depth int) (*verifiedDrv, error) {
	if v := m.builds.drvs.get(p); v != nil {
		return v, nil
	}
	dir := m.store.dir
	shown := dir.String(p)
	if depth > maxDrvDepth || walking[p] {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: input derivations nested too deep or in a cycle", shown)
	}
	walking[p] = true
	defer delete(walking, p)
	name, err := drv.NameOf(p)
	if err != nil {
		return nil, drvFail(errBadDrv, "%v", err)
	}
	var valid bool
	if err := m.store.with(func(db *storedb.DB) (e error) { valid, e = db.IsValid(p); return }); err != nil {
		return nil, err
	}
	if !valid {
		return nil, drvFail(errNotValidDrv, "path '%s' is not valid", shown)
	}
	text, err := m.readDrvFile(p)
	if err != nil {
		return nil, err
	}
	d, err := parser.parse(text)
	if err != nil {
		var e *msg.Error
		if errors.As(err, &e) {
			return nil, drvFail(errBadDrv, "derivation '%s' refused: %s", shown, e.Message)
		}
		return nil, err
	}
	printed, err := d.ATerm()
	if err != nil || !bytes.Equal(printed, text) {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: the parsed derivation does not print back to the file (%v)", shown, err)
	}
	if err := d.Validate(dir); err != nil {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
	}
	if at, err := drv.Path(dir, name, d); err != nil || at != p {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: its text belongs at another path", shown)
	}
	for _, in := range d.InputDrvs {
		ip, err := dir.Parse(in.Path)
		if err != nil {
			return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
		}
		iv, err := m.verifyDrvWith(parser, ip, walking, depth+1)
		if err != nil {
			return nil, err
		}
		for _, o := range in.Outputs {
			if _, ok := iv.outputs[o]; !ok {
				return nil, drvFail(errBadDrv, "derivation '%s' uses output '%s' of '%s', which has none by that name", shown, o, in.Path)
			}
		}
	}
	lookup := func(q storepath.Path) (nixhash.Hash, error) {
		if v := m.builds.drvs.get(q); v != nil {
			return v.hashMod, nil
		}
		return nixhash.Hash{}, fmt.Errorf("input derivation %s not verified", q.Base())
	}
	kind, infos, err := d.Kind(dir)
	if err != nil {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
	}
	if kind != drv.InputAddressed && kind != drv.FixedOutput {
		return nil, drvFail(errUnsupportedDrv, "'%s' is a %s derivation, which privnix cannot build", shown, kind)
	}
	if err := drv.Check(dir, name, d, lookup); err != nil {
		return nil, drvFail(errBadDrv, "%v", err)
	}
	outs, err := drv.OutputPaths(dir, name, d, lookup)
	if err != nil {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
	}
	h, err := drv.HashModulo(dir, d, false, lookup)
	if err != nil {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
	}
	oh, err := drv.HashModulo(dir, d, true, lookup)
	if err != nil {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
	}
	v := &verifiedDrv{path: p, name: name, d: d, kind: kind, infos: infos, hashMod: h, outHash: oh, outputs: outs}
	m.builds.drvs.put(v)
	return v, nil
}

var (
	errNotValidDrv    = errors.New("not valid")
	errUnsupportedDrv = errors.New("unsupported derivation")
)

// drvErr is a refusal whose text is for the client as it is.
type drvErr struct {
	kind error
	msg  string
}

func (e *drvErr) Error() string { return e.msg }
func (e *drvErr) Unwrap() error { return e.kind }

func drvFail(kind error, format string, args ...any) error {
	return &drvErr{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// registerDrvOutputs records v's outputs in the database (what
// QueryDerivationOutputMap and --valid-derivers read).
func (m *Monitor) registerDrvOutputs(v *verifiedDrv) error {
	if v.inline {
		return nil
	}
	return m.store.with(func(db *storedb.DB) error {
		have, err := db.DerivationOutputs(v.path)
		if err != nil {
			return err
		}
		same := len(have) == len(v.outputs)
		for n, p := range v.outputs {
			same = same && have[n] == p
		}
		if same {
			return nil
		}
		return db.SetDerivationOutputs(v.path, v.outputs)
	})
}

// afterRegister runs once a path was made valid by an upload: a .drv is
// verified and its outputs recorded, as Nix does when it registers one. A
// .drv that fails stays valid (it is only text) but has no outputs recorded;
// building it is refused with the reason.
func (s *session) afterRegister(p storepath.Path) {
	if !p.IsDerivation() {
		return
	}
	v, err := s.m.verifyDrv(p)
	if err == nil {
		err = s.m.registerDrvOutputs(v)
	}
	if err != nil {
		s.log.Warn("derivation not verified; its outputs are not recorded", "drv", s.m.store.dir.String(p), "err", err)
	}
}

func handleQueryDrvOutputs(s *session, req msg.Message, _ []*os.File) (reply, error) {
	q := req.(*msg.QueryDrvOutputs)
	p, err := s.path(q.Path)
	if err != nil {
		return reply{}, err
	}
	v, err := s.m.verifyDrv(p)
	if err != nil {
		return s.drvError(err), nil
	}
	if err := s.m.registerDrvOutputs(v); err != nil {
		return s.failed("recording derivation outputs", err), nil
	}
	out := &msg.DrvOutputs{}
	for _, o := range v.d.Outputs {
		out.Names = append(out.Names, o.Name)
		out.Paths = append(out.Paths, msg.StorePath(s.m.store.dir.String(v.outputs[o.Name])))
	}
	return answer(out), nil
}

// drvError turns a verification error into the answer.
func (s *session) drvError(err error) reply {
	switch {
	case errors.Is(err, errNotValidDrv):
		return answer(&msg.Error{Class: msg.ClassPolicy, Message: trimText(err.Error())})
	case errors.Is(err, errBadDrv), errors.Is(err, errUnsupportedDrv):
		s.audit.Warn("derivation refused", "err", err)
		return answer(&msg.Error{Class: msg.ClassPolicy, Message: trimText(err.Error())})
	}
	return s.failed("reading a derivation", err)
}

func trimText(s string) string {
	if len(s) > msg.MaxText {
		return s[:msg.MaxText]
	}
	return s
}

package monitor

import (
	"errors"
	"fmt"
	"os"

	"privnix/ipc/msg"
	"privnix/nix/drv"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
	"privnix/policy"
)

// BuildDerivation (worker op 36): a derivation handed over inline, as a
// remote builder gets it: no input derivations, input sources that must be
// valid. The frontend decoded it; here it is checked as a .drv from the
// store would be (canonical, typed outputs), and policy decides, as Nix
// 2.8: anyone may build a fixed-output derivation, whose output path is
// computed from its hash (drv.Check) and whose name in the store is the
// path its text would have (the client's drvPath is not trusted); only a
// trusted user may build an input-addressed one, whose output paths cannot
// be checked without its input derivations and are taken as given (a
// trusted user can already register any path). The derivation is not
// written to the store and never memoised.

func handleBuildDerivation(s *session, req msg.Message, _ []*os.File) (reply, error) {
	b := req.(*msg.BuildDerivation)
	p, err := s.path(b.DrvPath)
	if err != nil {
		return reply{}, err
	}
	v, err := s.m.inlineDrv(p, &b.Drv)
	if err != nil {
		var de *drvErr
		if errors.As(err, &de) {
			return answer(refuse(trimText(de.msg))), nil
		}
		return s.failed("reading the derivation", err), nil
	}
	d := policy.CheckOp("BuildDerivation", policy.Request{Trusted: s.trusted, Repair: b.Mode == msg.BuildModeRepair,
		InputAddressed: v.kind != drv.FixedOutput})
	if !d.Allow {
		s.log.Warn("inline derivation refused", "drv", s.m.store.dir.String(v.path), "rule", d.Rule)
		return answer(refuse(d.Reason)), nil
	}
	r := newBuildRequest(s, b.Mode)
	defer r.abandon()
	o := r.realiseInline(v)
	var wanted []string
	for _, out := range v.d.Outputs {
		wanted = append(wanted, out.Name)
	}
	return answer(&msg.BuildResults{Results: msg.BuildResultList{r.result(v, o, wanted)}}), nil
}

// inlineDrv assembles and checks an inline derivation the client calls p.
func (m *Monitor) inlineDrv(p storepath.Path, in *msg.Drv) (*verifiedDrv, error) {
	dir := m.store.dir
	shown := dir.String(p)
	name, err := drv.NameOf(p)
	if err != nil {
		return nil, drvFail(errBadDrv, "%v", err)
	}
	d := &drv.Derivation{Platform: in.Platform, Builder: in.Builder}
	appendDrvPart(d, in)
	if err := d.Validate(dir); err != nil {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
	}
	kind, infos, err := d.Kind(dir)
	if err != nil {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
	}
	none := func(q storepath.Path) (nixhash.Hash, error) {
		return nixhash.Hash{}, fmt.Errorf("an inline derivation has no input derivations")
	}
	switch kind {
	case drv.FixedOutput:
		if err := drv.Check(dir, name, d, none); err != nil {
			return nil, drvFail(errBadDrv, "%v", err)
		}
		if p, err = drv.Path(dir, name, d); err != nil {
			return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
		}
	case drv.InputAddressed:
	default:
		return nil, drvFail(errUnsupportedDrv, "'%s' is a %s derivation, which privnix cannot build", shown, kind)
	}
	v := &verifiedDrv{path: p, name: name, d: d, kind: kind, infos: infos, outputs: map[string]storepath.Path{}, inline: true}
	for _, i := range infos {
		v.outputs[i.Name] = i.Path
	}
	if v.outHash, err = drv.HashModulo(dir, d, true, none); err != nil {
		return nil, drvFail(errBadDrv, "derivation '%s' refused: %v", shown, err)
	}
	return v, nil
}

// realiseInline builds an inline derivation whose outputs are missing (or
// checks or repairs them): its input sources must be valid already.
func (r *buildRequest) realiseInline(v *verifiedDrv) *outcome {
	o := &outcome{ready: make(chan struct{})}
	defer close(o.ready)
	if r.outputsReady(v, r.mode, 0, o) {
		return o
	}
	m := r.s.m
	for _, src := range v.d.InputSrcs {
		p, err := m.store.dir.Parse(src)
		if err != nil {
			o.status, o.msg = statusMiscFailure, err.Error()
			return o
		}
		if missing, err := m.missingAmong([]storepath.Path{p}); err != nil || len(missing) > 0 {
			o.status = statusMiscFailure
			o.msg = fmt.Sprintf("cannot build '%s': its input '%s' is not valid", yellow(m.store.dir.String(v.path)), yellow(src))
			return o
		}
	}
	r.build(v, r.mode, o)
	return o
}

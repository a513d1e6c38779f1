package monitor

import (
	"errors"
	"fmt"

	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/nix/storepath"
)

// Where builds meet substitution (build.go calls these): an opaque target
// is substituted, and a derivation whose outputs are missing gets them from
// a cache when every one is there, as Nix's derivation goal does before it
// builds.

// warner sends substitution warnings to the client as build events.
func (r *buildRequest) warner(p storepath.Path) func(string) {
	return func(text string) { r.event(msg.EventWarn, p, text) }
}

// substitutePath realises an opaque (non-derivation-output) target.
func (r *buildRequest) substitutePath(p storepath.Path) msg.BuildResult {
	if r.sub == nil {
		return msg.BuildResult{Status: statusNoSubstituters,
			ErrorMsg: fmt.Sprintf("path '%s' is required, but there is no substituter that can build it", r.s.m.store.dir.String(p))}
	}
	return substResult(r.sub.ensure(p, r.warner(p)))
}

// repairPath fetches a valid opaque target again (nix-store -r --repair), as
// Nix's substitution goal in repair mode does (subst.repair).
func (r *buildRequest) repairPath(p storepath.Path) msg.BuildResult {
	var info storedb.PathInfo
	var valid bool
	if err := r.s.m.store.with(func(db *storedb.DB) (e error) { info, valid, e = db.PathInfo(p); return }); err != nil || !valid {
		return msg.BuildResult{Status: statusMiscFailure, ErrorMsg: "checking validity failed in privnixd"}
	}
	return substResult(r.sub.repair(p, info.NarHash, r.warner(p)))
}

// substResult is a substituted target's result.
func substResult(err error) msg.BuildResult {
	if err == nil {
		return msg.BuildResult{Status: statusSubstituted}
	}
	var se *substError
	if errors.As(err, &se) && se.none {
		return msg.BuildResult{Status: statusNoSubstituters, ErrorMsg: trimText(se.msg)}
	}
	return msg.BuildResult{Status: statusTransientFailure, ErrorMsg: trimText(err.Error())}
}

// substituteOutputs tries to substitute v's missing outputs. It reports
// whether o is final: every output substituted, or a cache failed and the
// connection did not ask for --fallback (Nix's message). When some output
// has no substitute, v is built.
func (r *buildRequest) substituteOutputs(v *verifiedDrv, o *outcome) bool {
	if r.sub == nil || len(r.sub.urls) == 0 {
		return false
	}
	missing, err := r.s.m.missingOutputs(v)
	if err != nil || len(missing) == 0 {
		return false // outputsReady answered both already
	}
	failed := false
	for _, p := range missing {
		err := r.sub.ensure(p, r.warner(v.path))
		var se *substError
		if err != nil && errors.As(err, &se) && se.none {
			return false
		}
		failed = failed || err != nil
	}
	if !failed {
		o.status = statusSubstituted
		return true
	}
	if r.set.Fallback {
		return false
	}
	o.status = statusTransientFailure
	o.msg = fmt.Sprintf("some substitutes for the outputs of derivation '%s' failed (usually happens due to networking issues); try '--fallback' to build derivation from source ",
		r.s.m.store.dir.String(v.path))
	return true
}

// willSubstitute is QueryMissing's question for missing paths: can all of
// them be substituted? If so they and their missing references are added
// to out.WillSubstitute with their sizes (each path once).
func (x *subst) willSubstitute(missing []storepath.Path, out *msg.Missing, seen map[storepath.Path]bool) bool {
	if len(x.urls) == 0 {
		return false
	}
	var add []*offer
	var walk func(p storepath.Path) bool
	walk = func(p storepath.Path) bool {
		if seen[p] || len(add) > maxClosure {
			return true
		}
		if ms, err := x.s.m.missingAmong([]storepath.Path{p}); err != nil || len(ms) == 0 {
			return err == nil
		}
		o := x.find(p, func(string) {})
		if o == nil {
			return false
		}
		seen[p] = true
		add = append(add, o)
		for _, ref := range o.refs {
			if !walk(ref) {
				return false
			}
		}
		return true
	}
	x.work.Lock()
	defer x.work.Unlock()
	for _, p := range missing {
		if !walk(p) {
			for _, o := range add {
				delete(seen, o.path)
			}
			return false
		}
	}
	for _, o := range add {
		out.WillSubstitute = append(out.WillSubstitute, o.ni.StorePath)
		out.DownloadSize += o.ni.FileSize
		out.NarSize += o.ni.NarSize
	}
	return true
}

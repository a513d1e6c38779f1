package frontend

import (
	"maps"
	"slices"

	"privnix/frontend/wire"
)

// Simple queries: read a path, ask the Backend, write the answer.

func opIsValidPath(c *conn) error {
	p, err := c.path("path")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	ok, err := c.b.IsValidPath(c.opContext(), p)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.Bool(ok) })
}

func opHasSubstitutes(c *conn) error {
	p, err := c.path("path")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	subs, err := c.b.QuerySubstitutablePaths(c.opContext(), []string{p})
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.Bool(slices.Contains(subs, p)) })
}

// validInfo asks for a path's info and fails with Nix's text when it is not valid.
func (c *conn) validInfo(p string) (*wire.UnkeyedValidPathInfo, error) {
	info, err := c.b.QueryPathInfo(c.opContext(), p)
	if err == nil && info == nil {
		err = Errorf("path '%s' is not valid", p)
	}
	return info, err
}

// infoQuery answers an old single-field query (QueryPathHash, QueryReferences, QueryDeriver) from the path info.
func infoQuery(c *conn, write func(w *wire.Writer, info *wire.UnkeyedValidPathInfo)) error {
	p, err := c.path("path")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	info, err := c.validInfo(p)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { write(w, info) })
}

func opQueryPathHash(c *conn) error {
	return infoQuery(c, func(w *wire.Writer, i *wire.UnkeyedValidPathInfo) { w.String(i.NarHash) })
}

func opQueryReferences(c *conn) error {
	return infoQuery(c, func(w *wire.Writer, i *wire.UnkeyedValidPathInfo) { w.StringSet(i.References) })
}

func opQueryDeriver(c *conn) error {
	return infoQuery(c, func(w *wire.Writer, i *wire.UnkeyedValidPathInfo) { w.String(i.Deriver) })
}

func opQueryPathInfo(c *conn) error {
	p, err := c.path("path")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	if !c.v.AtLeast(17) {
		info, err := c.validInfo(p)
		if err != nil {
			return err
		}
		return c.reply(func(w *wire.Writer) { wire.WriteUnkeyedValidPathInfo(w, c.v, *info) })
	}
	info, err := c.b.QueryPathInfo(c.opContext(), p)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) {
		w.Bool(info != nil)
		if info != nil {
			wire.WriteUnkeyedValidPathInfo(w, c.v, *info)
		}
	})
}

// pathSetQuery answers a query from one path to a set of paths.
func pathSetQuery(c *conn, q func(c *conn, p string) ([]string, error)) error {
	p, err := c.path("path")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	ps, err := q(c, p)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.StringSet(ps) })
}

func opQueryReferrers(c *conn) error {
	return pathSetQuery(c, func(c *conn, p string) ([]string, error) { return c.b.QueryReferrers(c.opContext(), p) })
}

func opQueryValidDerivers(c *conn) error {
	return pathSetQuery(c, func(c *conn, p string) ([]string, error) { return c.b.QueryValidDerivers(c.opContext(), p) })
}

func opQueryDerivationOutputs(c *conn) error {
	return pathSetQuery(c, func(c *conn, p string) ([]string, error) {
		m, err := c.b.QueryDerivationOutputMap(c.opContext(), p)
		var out []string
		for _, o := range m {
			if o != "" {
				out = append(out, o)
			}
		}
		return out, err
	})
}

func opQueryDerivationOutputNames(c *conn) error {
	return pathSetQuery(c, func(c *conn, p string) ([]string, error) {
		m, err := c.b.QueryDerivationOutputMap(c.opContext(), p)
		return slices.Collect(maps.Keys(m)), err
	})
}

func opQueryDerivationOutputMap(c *conn) error {
	p, err := c.path("derivation path")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	m, err := c.b.QueryDerivationOutputMap(c.opContext(), p)
	if err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(m))
	return c.reply(func(w *wire.Writer) {
		w.U64(uint64(len(names)))
		for _, n := range names {
			w.String(n)
			w.String(m[n])
		}
	})
}

func opQueryAllValidPaths(c *conn) error {
	if err := c.begin(); err != nil {
		return err
	}
	ps, err := c.b.QueryAllValidPaths(c.opContext())
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.StringSet(ps) })
}

func opQueryPathFromHashPart(c *conn) error {
	h, err := c.r.String(wire.MaxSmallString, "hash part")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	p, err := c.b.QueryPathFromHashPart(c.opContext(), h)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.String(p) })
}

func opQueryValidPaths(c *conn) error {
	ps, err := c.pathSet("paths")
	if err != nil {
		return err
	}
	subst := false
	if c.v.AtLeast(27) {
		if subst, err = c.r.Bool(); err != nil {
			return err
		}
	}
	if err := c.begin(); err != nil {
		return err
	}
	valid, err := c.b.QueryValidPaths(c.opContext(), ps, subst)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.StringSet(valid) })
}

func opQuerySubstitutablePaths(c *conn) error {
	ps, err := c.pathSet("paths")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	subs, err := c.b.QuerySubstitutablePaths(c.opContext(), ps)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.StringSet(subs) })
}

func writeSubstInfo(w *wire.Writer, i SubstitutablePathInfo) {
	w.String(i.Deriver)
	w.StringSet(i.References)
	w.U64(i.DownloadSize)
	w.U64(i.NarSize)
}

func opQuerySubstitutablePathInfo(c *conn) error {
	p, err := c.path("path")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	infos, err := c.b.QuerySubstitutablePathInfos(c.opContext(), map[string]string{p: ""})
	if err != nil {
		return err
	}
	info, ok := infos[p]
	return c.reply(func(w *wire.Writer) {
		w.Bool(ok)
		if ok {
			writeSubstInfo(w, info)
		}
	})
}

func opQuerySubstitutablePathInfos(c *conn) error {
	req := map[string]string{}
	if c.v.AtLeast(22) {
		pairs, err := c.r.Pairs(wire.MaxCount, wire.MaxPathLen, wire.MaxSmallString, "paths")
		if err != nil {
			return err
		}
		for _, p := range pairs {
			if err := checkStorePath(c.sess.StoreDir, p.Key); err != nil {
				return err
			}
			req[p.Key] = p.Value
		}
	} else {
		ps, err := c.pathSet("paths")
		if err != nil {
			return err
		}
		for _, p := range ps {
			req[p] = ""
		}
	}
	if err := c.begin(); err != nil {
		return err
	}
	infos, err := c.b.QuerySubstitutablePathInfos(c.opContext(), req)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) {
		w.U64(uint64(len(infos)))
		for _, p := range slices.Sorted(maps.Keys(infos)) {
			w.String(p)
			writeSubstInfo(w, infos[p])
		}
	})
}

func opQueryMissing(c *conn) error {
	targets, err := c.derivedPaths()
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	m, err := c.b.QueryMissing(c.opContext(), targets)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) {
		w.StringSet(m.WillBuild)
		w.StringSet(m.WillSubstitute)
		w.StringSet(m.Unknown)
		w.U64(m.DownloadSize)
		w.U64(m.NarSize)
	})
}

// Roots and GC.

// pathAction reads one path and calls a Backend method answering u64 1.
func pathAction(c *conn, read func(c *conn) (string, error), act func(c *conn, p string) error) error {
	p, err := read(c)
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	if err := act(c, p); err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.U64(1) })
}

func readPath(c *conn) (string, error) { return c.path("path") }

func opAddTempRoot(c *conn) error {
	return pathAction(c, readPath, func(c *conn, p string) error { return c.b.AddTempRoot(c.opContext(), p) })
}

func opAddIndirectRoot(c *conn) error {
	read := func(c *conn) (string, error) {
		p, err := c.r.String(wire.MaxPathLen, "root path")
		if err == nil && (len(p) == 0 || p[0] != '/') {
			err = Errorf("indirect root '%s' is not an absolute path", p)
		}
		return p, err
	}
	return pathAction(c, read, func(c *conn, p string) error { return c.b.AddIndirectRoot(c.opContext(), p) })
}

// opEnsurePath makes the path valid, substituting it if it is not (as an
// opaque BuildPaths); a path nothing can provide is Nix's error.
func opEnsurePath(c *conn) error {
	return pathAction(c, readPath, func(c *conn, p string) error {
		ok, err := c.b.IsValidPath(c.opContext(), p)
		if err != nil || ok {
			return err
		}
		res, err := c.b.BuildPaths(c.opContext(), []wire.DerivedPath{{Path: p}}, 0)
		if err != nil {
			return err
		}
		if len(res) == 1 && res[0].Succeeded() {
			return nil
		}
		if len(res) == 1 && res[0].Status != buildNoSubstituters && res[0].ErrorMsg != "" {
			return Errorf("%s", res[0].ErrorMsg)
		}
		return Errorf("path '\x1b[35;1m%s\x1b[0m' does not exist and cannot be created", p) // Nix's yellow path
	})
}

// buildNoSubstituters is Nix's BuildResult status NoSubstituters.
const buildNoSubstituters = 14

func opSyncWithGC(c *conn) error {
	if err := c.begin(); err != nil {
		return err
	}
	if err := c.b.SyncWithGC(c.opContext()); err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.U64(1) })
}

func opAddSignatures(c *conn) error {
	p, err := c.path("path")
	if err != nil {
		return err
	}
	sigs, err := c.r.StringSet(wire.MaxCount, wire.MaxSmallString, "signatures")
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	if err := c.b.AddSignatures(c.opContext(), p, sigs); err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.U64(1) })
}

// opCollectGarbage: u64 action, set<path>, u64 ignoreLiveness, u64 maxFreed,
// three obsolete u64; reply set<path>, u64 bytesFreed, u64 0 (§4.3 op 20).
func opCollectGarbage(c *conn) error {
	var req GCRequest
	var err error
	if req.Action, err = c.r.Uint(3, "GC action"); err != nil {
		return err
	}
	if req.Paths, err = c.pathSet("paths to delete"); err != nil {
		return err
	}
	if req.IgnoreLiveness, err = c.r.Bool(); err != nil {
		return err
	}
	if req.MaxFreed, err = c.r.U64(); err != nil {
		return err
	}
	for range 3 { // obsolete fields
		if _, err := c.r.U64(); err != nil {
			return err
		}
	}
	if err := c.begin(); err != nil {
		return err
	}
	if req.IgnoreLiveness {
		return Errorf("you are not allowed to ignore liveness")
	}
	res, err := c.b.CollectGarbage(c.opContext(), req)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) {
		w.StringSet(res.Paths)
		w.U64(res.BytesFreed)
		w.U64(0)
	})
}

// opFindRoots: no arguments; reply u64 n, n × (str link, path) (§4.3 op 14).
func opFindRoots(c *conn) error {
	if err := c.begin(); err != nil {
		return err
	}
	roots, err := c.b.FindRoots(c.opContext())
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) {
		w.U64(uint64(len(roots)))
		for _, r := range roots {
			w.String(r.Link)
			w.String(r.Path)
		}
	})
}

func opAddPermRoot(c *conn) error {
	if _, err := c.path("path"); err != nil {
		return err
	}
	if _, err := c.r.String(wire.MaxPathLen, "GC root"); err != nil {
		return err
	}
	return c.notImplemented()
}

func opVerifyStore(c *conn) error {
	checkContents, err := c.r.Bool()
	if err != nil {
		return err
	}
	repair, err := c.r.Bool()
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	if repair && !c.sess.Trusted {
		return Errorf("you are not privileged to repair paths")
	}
	errors, err := c.b.VerifyStore(c.opContext(), checkContents, repair)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.Bool(errors) })
}

// opOptimiseStore: no arguments; reply u64 1.
func opOptimiseStore(c *conn) error {
	if err := c.begin(); err != nil {
		return err
	}
	if err := c.b.OptimiseStore(c.opContext()); err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.U64(1) })
}

// Builds and realisations: decoded in full, not implemented yet.

func opBuildPaths(c *conn) error {
	targets, err := c.derivedPaths()
	if err != nil {
		return err
	}
	mode := wire.BuildNormal
	if c.v.AtLeast(15) {
		if mode, err = wire.ReadBuildMode(c.r); err != nil {
			return err
		}
	}
	if mode == wire.BuildRepair && !c.sess.Trusted {
		return errClose{Errorf("repairing is not allowed because you are not in 'trusted-users'")}
	}
	if err := c.begin(); err != nil {
		return err
	}
	results, err := c.b.BuildPaths(c.opContext(), targets, mode)
	if err != nil {
		return err
	}
	if c.op.name == "BuildPathsWithResults" {
		return c.reply(func(w *wire.Writer) {
			w.U64(uint64(len(results)))
			for _, r := range results {
				wire.WriteKeyedBuildResult(w, c.v, slices.Contains(c.features, wire.FeatureRealisationWithPathNotHash), r)
			}
		})
	}
	// BuildPaths (9) answers 1, or fails as nix-daemon does (buildFailure).
	if err := buildFailure(c.log, results); err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) { w.U64(1) })
}

func opRegisterDrvOutput(c *conn) error {
	if !c.v.AtLeast(31) {
		if _, err := c.r.String(wire.MaxSmallString, "derivation output id"); err != nil {
			return err
		}
	}
	if _, err := c.r.String(wire.MaxTextLen, "realisation"); err != nil {
		return err
	}
	return c.notImplemented()
}

func opQueryRealisation(c *conn) error {
	if _, err := c.r.String(wire.MaxSmallString, "derivation output id"); err != nil {
		return err
	}
	return c.notImplemented()
}

func opExportPath(c *conn) error {
	if _, err := c.path("path"); err != nil {
		return err
	}
	if _, err := c.r.U64(); err != nil { // obsolete "sign" flag
		return err
	}
	return c.notImplemented()
}

// opSetOptions parses the client's settings and hands them to the Backend.
func opSetOptions(c *conn) error {
	opts, err := wire.ReadClientOptions(c.r, c.v)
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	c.log.verbosity.Store(opts.Verbosity)
	warnings, err := c.b.SetOptions(c.opContext(), opts)
	for _, w := range warnings {
		c.log.Warn(w)
	}
	if err != nil {
		return err
	}
	return c.reply(nil)
}

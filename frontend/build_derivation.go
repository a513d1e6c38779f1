package frontend

import (
	"slices"

	"privnix/frontend/wire"
)

// BasicDerivation is a derivation as BuildDerivation (op 36) sends it
// (§4.1): no input derivations, fields as in the ATerm.
type BasicDerivation struct {
	Outputs   []DerivationOutput // sorted by name
	InputSrcs []string
	Platform  string
	Builder   string
	Args      []string
	Env       []wire.Pair // sorted by key
}

// DerivationOutput is one output: name, path, hash algorithm and hash as
// written in the ATerm (the last two empty unless fixed-output).
type DerivationOutput struct{ Name, Path, HashAlgo, Hash string }

// maxBasicOutputs bounds a BasicDerivation's outputs (as the monitor's
// msg.MaxDrvOutputs).
const maxBasicOutputs = 256

// opBuildDerivation: path drvPath, BasicDerivation, u64 buildMode; reply an
// unkeyed BuildResult (§4.3 op 36). Whether the user may build it is the
// monitor's decision (only fixed-output derivations for untrusted users).
func opBuildDerivation(c *conn) error {
	drvPath, err := c.path("derivation path")
	if err != nil {
		return err
	}
	d, err := c.readBasicDerivation()
	if err != nil {
		return err
	}
	mode, err := wire.ReadBuildMode(c.r)
	if err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	res, err := c.b.BuildDerivation(c.opContext(), drvPath, d, mode)
	if err != nil {
		return err
	}
	return c.reply(func(w *wire.Writer) {
		wire.WriteBuildResult(w, c.v, slices.Contains(c.features, wire.FeatureRealisationWithPathNotHash), res)
	})
}

// readBasicDerivation reads a BasicDerivation with caps; the store paths
// must be in the store (the monitor checks the rest).
func (c *conn) readBasicDerivation() (BasicDerivation, error) {
	var d BasicDerivation
	n, err := c.r.Uint(maxBasicOutputs, "derivation outputs")
	if err != nil {
		return d, err
	}
	for range n {
		var o DerivationOutput
		for _, f := range []struct {
			dst  *string
			what string
		}{{&o.Name, "output name"}, {&o.Path, "output path"}, {&o.HashAlgo, "output hash algorithm"}, {&o.Hash, "output hash"}} {
			if *f.dst, err = c.r.String(wire.MaxPathLen, f.what); err != nil {
				return d, err
			}
		}
		d.Outputs = append(d.Outputs, o)
	}
	if d.InputSrcs, err = c.pathSet("input sources"); err != nil {
		return d, err
	}
	if d.Platform, err = c.r.String(wire.MaxPathLen, "platform"); err != nil {
		return d, err
	}
	if d.Builder, err = c.r.String(wire.MaxPathLen, "builder"); err != nil {
		return d, err
	}
	if d.Args, err = c.r.Strings(wire.MaxCount, wire.MaxTextLen, "builder arguments"); err != nil {
		return d, err
	}
	d.Env, err = c.r.Pairs(wire.MaxCount, wire.MaxSmallString, wire.MaxTextLen, "environment")
	return d, err
}

package nixclient

import (
	"privnix/frontend/wire"
	"privnix/nix/drv"
)

// OpBuildDerivation is worker op 36.
const OpBuildDerivation = 36

// BuildDerivation sends d inline as a BasicDerivation (§4.1: its input
// derivations are not sent) named drvPath, and returns the daemon's
// BuildResult; a refusal is a *RemoteError.
func (c *Client) BuildDerivation(drvPath string, d *drv.Derivation, mode uint64) (wire.BuildResult, error) {
	c.w.U64(OpBuildDerivation)
	c.w.String(drvPath)
	c.w.U64(uint64(len(d.Outputs)))
	for _, o := range d.Outputs {
		for _, s := range []string{o.Name, o.Path, o.HashAlgo, o.Hash} {
			c.w.String(s)
		}
	}
	c.w.Strings(d.InputSrcs)
	c.w.String(d.Platform)
	c.w.String(d.Builder)
	c.w.Strings(d.Args)
	env := make([]wire.Pair, len(d.Env))
	for i, e := range d.Env {
		env[i] = wire.Pair{Key: e.Key, Value: e.Value}
	}
	c.w.Pairs(env)
	c.w.U64(mode)
	if err := c.w.Flush(); err != nil {
		return wire.BuildResult{}, err
	}
	if err := c.stderr(); err != nil {
		return wire.BuildResult{}, err
	}
	return wire.ReadBuildResult(c.r, c.V, false)
}

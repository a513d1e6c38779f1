package nixclient

import "privnix/frontend/wire"

// Op numbers of the substitution queries.
const (
	OpQuerySubstitutablePathInfos = 30
	OpQuerySubstitutablePaths     = 32
)

// SubstInfo is one answer of QuerySubstitutablePathInfos.
type SubstInfo struct {
	Deriver      string
	References   []string
	DownloadSize uint64
	NarSize      uint64
}

// QuerySubstitutablePaths asks which paths a substituter has (op 32).
func (c *Client) QuerySubstitutablePaths(paths []string) ([]string, error) {
	c.w.U64(OpQuerySubstitutablePaths)
	c.w.StringSet(paths)
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	if err := c.stderr(); err != nil {
		return nil, err
	}
	return c.r.StringSet(wire.MaxCount, wire.MaxPathLen, "paths")
}

// QuerySubstitutablePathInfos asks what each path's substitute would
// download (op 30, the ≥ 1.22 form with an empty content address per path).
func (c *Client) QuerySubstitutablePathInfos(paths []string) (map[string]SubstInfo, error) {
	c.w.U64(OpQuerySubstitutablePathInfos)
	c.w.U64(uint64(len(paths)))
	for _, p := range paths {
		c.w.String(p)
		c.w.String("")
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	if err := c.stderr(); err != nil {
		return nil, err
	}
	n, err := c.r.Uint(wire.MaxCount, "infos")
	if err != nil {
		return nil, err
	}
	out := map[string]SubstInfo{}
	for range n {
		p, err := c.r.String(wire.MaxPathLen, "path")
		if err != nil {
			return nil, err
		}
		var in SubstInfo
		if in.Deriver, err = c.r.String(wire.MaxPathLen, "deriver"); err != nil {
			return nil, err
		}
		if in.References, err = c.r.StringSet(wire.MaxCount, wire.MaxPathLen, "references"); err != nil {
			return nil, err
		}
		if in.DownloadSize, err = c.r.U64(); err != nil {
			return nil, err
		}
		if in.NarSize, err = c.r.U64(); err != nil {
			return nil, err
		}
		out[p] = in
	}
	return out, nil
}

// OpQueryValidPaths is QueryValidPaths (op 31).
const OpQueryValidPaths = 31

// QueryValidPaths returns the valid subset of paths; with substitute (≥ 1.27,
// the client's builders-use-substitutes) the daemon substitutes missing ones first.
func (c *Client) QueryValidPaths(paths []string, substitute bool) ([]string, error) {
	c.w.U64(OpQueryValidPaths)
	c.w.StringSet(paths)
	if c.V.AtLeast(27) {
		c.w.Bool(substitute)
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	if err := c.stderr(); err != nil {
		return nil, err
	}
	return c.r.StringSet(wire.MaxCount, wire.MaxPathLen, "paths")
}

// OpEnsurePath is EnsurePath (op 10).
const OpEnsurePath = 10

// EnsurePath asks the daemon to make path valid (substituting it if it can).
func (c *Client) EnsurePath(path string) error {
	c.w.U64(OpEnsurePath)
	c.w.String(path)
	if err := c.w.Flush(); err != nil {
		return err
	}
	if err := c.stderr(); err != nil {
		return err
	}
	_, err := c.r.U64()
	return err
}

// OpBuildPaths is BuildPaths (op 9).
const OpBuildPaths = 9

// BuildPaths asks the daemon to make the opaque paths valid (build mode
// normal), as `nix-store -r` does.
func (c *Client) BuildPaths(paths []string) error {
	c.w.U64(OpBuildPaths)
	c.w.Strings(paths)
	c.w.U64(0)
	if err := c.w.Flush(); err != nil {
		return err
	}
	if err := c.stderr(); err != nil {
		return err
	}
	_, err := c.r.U64()
	return err
}

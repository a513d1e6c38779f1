package nixclient

// OpQueryReferrers is the worker protocol's QueryReferrers.
const OpQueryReferrers = 6

// QueryReferrers returns the valid paths that refer to path.
func (c *Client) QueryReferrers(path string) ([]string, error) {
	c.w.U64(OpQueryReferrers)
	c.w.String(path)
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	if err := c.stderr(); err != nil {
		return nil, err
	}
	return c.r.StringSet(1<<20, 4096, "referrers")
}

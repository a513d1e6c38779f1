package frontend

import (
	"strings"

	"privnix/frontend/wire"
)

const nix32Chars = "0123456789abcdfghijklmnpqrsvwxyz"

// checkStorePath refuses anything but "<storeDir>/<32 nix32 chars>-<name>" (§5.5).
func checkStorePath(storeDir, p string) error {
	rest, ok := strings.CutPrefix(p, storeDir+"/")
	if !ok {
		return Errorf("path '%s' is not in the Nix store", p)
	}
	if len(rest) < 34 || rest[32] != '-' {
		return Errorf("path '%s' is not a valid store path: it does not start with a 32-character hash and '-'", p)
	}
	for i := 0; i < 32; i++ {
		if !strings.ContainsRune(nix32Chars, rune(rest[i])) {
			return Errorf("path '%s' is not a valid store path: its hash part has an invalid character", p)
		}
	}
	return checkName(p, rest[33:])
}

// checkName applies Nix's store path name rules.
func checkName(p, name string) error {
	if len(name) > 211 {
		return Errorf("store path '%s' has a name longer than 211 characters", p)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("+-._?=", r)
		if !ok {
			return Errorf("store path '%s' contains illegal character '%c'", p, r)
		}
	}
	return nil
}

// path reads one store path argument.
func (c *conn) path(what string) (string, error) {
	p, err := c.r.String(wire.MaxPathLen, what)
	if err != nil {
		return "", err
	}
	return p, checkStorePath(c.sess.StoreDir, p)
}

// pathSet reads a set of store paths.
func (c *conn) pathSet(what string) ([]string, error) {
	ps, err := c.r.StringSet(wire.MaxCount, wire.MaxPathLen, what)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if err := checkStorePath(c.sess.StoreDir, p); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// derivedPaths reads a list of DerivedPath strings in the negotiated form.
func (c *conn) derivedPaths() ([]wire.DerivedPath, error) {
	ss, err := c.r.Strings(wire.MaxCount, wire.MaxPathLen+wire.MaxSmallString, "derived paths")
	if err != nil {
		return nil, err
	}
	out := make([]wire.DerivedPath, 0, len(ss))
	for _, s := range ss {
		d, err := wire.ParseDerivedPath(s, c.v)
		if err != nil {
			return nil, Errorf("%v", err)
		}
		if err := checkStorePath(c.sess.StoreDir, d.Path); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// pathInfo reads a keyed ValidPathInfo in the 1.16 layout (AddToStoreNar, AddMultipleToStore) and checks its paths.
func pathInfo(r *wire.Reader, storeDir string) (wire.ValidPathInfo, error) {
	info, err := wire.ReadValidPathInfo(r, wire.V(16))
	if err != nil {
		return info, err
	}
	if err := checkStorePath(storeDir, info.Path); err != nil {
		return info, err
	}
	if info.Deriver != "" {
		if err := checkStorePath(storeDir, info.Deriver); err != nil {
			return info, err
		}
	}
	for _, p := range info.References {
		if err := checkStorePath(storeDir, p); err != nil {
			return info, err
		}
	}
	return info, nil
}

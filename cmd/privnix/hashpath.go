package main

import (
	"fmt"
	"io"
	"os"

	"privnix/internal/narfs"
	"privnix/nix/nixhash"
)

// HashPathCmd is `privnix hash path`: the hash of a path's NAR serialisation,
// as `nix-hash --type sha256 --base32 PATH` prints it.
type HashPathCmd struct {
	Type   string   `default:"sha256" enum:"md5,sha1,sha256,sha512" help:"Hash algorithm: md5, sha1, sha256 or sha512."`
	Base32 bool     `xor:"enc" name:"base32" help:"Print in nixbase32 (the default)."`
	Base16 bool     `xor:"enc" name:"base16" help:"Print in base16."`
	SRI    bool     `xor:"enc" name:"sri" help:"Print as an SRI hash (algo-base64)."`
	Paths  []string `arg:"" name:"path" help:"Files, symlinks or directories to serialise and hash."`
}

// Run prints one hash per path, in argument order.
func (c *HashPathCmd) Run() error { return c.run(os.Stdout) }

func (c *HashPathCmd) run(out io.Writer) error {
	algo, err := nixhash.ParseAlgo(c.Type)
	if err != nil {
		return err
	}
	for _, p := range c.Paths {
		h, err := hashPathNAR(algo, p)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(out, c.encode(h)); err != nil {
			return err
		}
	}
	return nil
}

func (c *HashPathCmd) encode(h nixhash.Hash) string {
	switch {
	case c.Base16:
		return h.Base16()
	case c.SRI:
		return h.SRI()
	}
	return h.Nix32()
}

// hashPathNAR hashes the NAR serialisation of path (a symlink itself, not its target).
func hashPathNAR(algo nixhash.Algo, path string) (nixhash.Hash, error) {
	h := algo.New()
	if err := narfs.DumpPath(h, path); err != nil {
		return nixhash.Hash{}, fmt.Errorf("hashing %s: %w", path, err)
	}
	return nixhash.Hash{Algo: algo, Digest: h.Sum(nil)}, nil
}

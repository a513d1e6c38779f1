package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"privnix/internal/narfs"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// StorePathCmd is `privnix store-path`: the path an add would create, computed
// without touching a store.
type StorePathCmd struct {
	Fixed     bool   `xor:"mode" required:"" help:"The path of nix-store --add-fixed [--recursive] ALGO PATH."`
	Add       bool   `xor:"mode" required:"" help:"The path of nix-store --add PATH (NAR, sha256, no references)."`
	Recursive bool   `help:"With --fixed: hash the NAR serialisation instead of the file contents."`
	HashAlgo  string `name:"hash-algo" enum:"md5,sha1,sha256,sha512" default:"sha256" help:"With --fixed: md5, sha1, sha256 or sha512."`
	Name      string `help:"Name of the store path (default: the base name of PATH)."`
	StoreDir  string `name:"store-dir" env:"NIX_STORE_DIR" default:"/nix/store" help:"Store directory."`
	Path      string `arg:"" help:"File or directory to add."`
}

// Run prints the store path.
func (c *StorePathCmd) Run() error {
	if c.Add && c.Recursive {
		return errors.New("--recursive applies to --fixed only; --add is always recursive sha256")
	}
	dir, err := storepath.NewDir(c.StoreDir)
	if err != nil {
		return err
	}
	name := c.Name
	if name == "" {
		abs, err := filepath.Abs(c.Path)
		if err != nil {
			return err
		}
		name = filepath.Base(abs)
	}
	if err := storepath.ValidateName(name); err != nil {
		return fmt.Errorf("cannot name a store path after %s: %w", c.Path, err)
	}
	algo, err := nixhash.ParseAlgo(c.HashAlgo)
	if err != nil {
		return err
	}
	var p storepath.Path
	switch {
	case c.Add:
		var h nixhash.Hash
		if h, err = hashNAR(nixhash.SHA256, c.Path); err == nil {
			p, err = dir.MakeSource(name, h, nil, false)
		}
	case c.Recursive:
		var h nixhash.Hash
		if h, err = hashNAR(algo, c.Path); err == nil {
			p, err = dir.MakeFixedOutput(name, storepath.Recursive, h, nil, false)
		}
	default:
		var h nixhash.Hash
		if h, err = hashFileContents(algo, c.Path); err == nil {
			p, err = dir.MakeFixedOutput(name, storepath.Flat, h, nil, false)
		}
	}
	if err != nil {
		return err
	}
	fmt.Println(dir.String(p))
	return nil
}

// hashNAR hashes the NAR serialisation of path with algo, never following symlinks.
func hashNAR(algo nixhash.Algo, path string) (nixhash.Hash, error) {
	h, _, err := dumpNAR(algo, path)
	return h, err
}

// dumpNAR returns the hash and size of the NAR serialisation of path.
func dumpNAR(algo nixhash.Algo, path string) (nixhash.Hash, uint64, error) {
	h := algo.New()
	cw := &countingWriter{w: h}
	if err := narfs.DumpPath(cw, path); err != nil {
		return nixhash.Hash{}, 0, fmt.Errorf("serialising %s: %w", path, err)
	}
	return nixhash.Hash{Algo: algo, Digest: h.Sum(nil)}, cw.n, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

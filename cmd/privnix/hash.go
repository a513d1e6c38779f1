package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"privnix/nix/nixhash"
)

// HashCmd is `privnix hash`: hashing files and trees, converting hashes.
type HashCmd struct {
	Path    HashPathCmd    `cmd:"" help:"Hash the NAR serialisation of a path (nix-hash --type sha256 --base32 PATH)."`
	File    HashFileCmd    `cmd:"" help:"Hash the contents of files (nix-hash --flat)."`
	Convert HashConvertCmd `cmd:"" help:"Convert hashes between encodings (nix hash to-base16/to-base32/to-base64/to-sri)."`
}

// hashEncodings are the output encodings, by the names --to takes.
var hashEncodings = map[string]func(nixhash.Hash) string{
	"nix32":  nixhash.Hash.Nix32,
	"base32": nixhash.Hash.Nix32,
	"base16": nixhash.Hash.Base16,
	"base64": nixhash.Hash.Base64,
	"sri":    nixhash.Hash.SRI,
}

// HashFileCmd is `privnix hash file`, the equivalent of `nix-hash --flat`.
type HashFileCmd struct {
	Type   string   `default:"sha256" enum:"md5,sha1,sha256,sha512" help:"Hash algorithm: md5, sha1, sha256 or sha512."`
	Base32 bool     `xor:"enc" name:"base32" help:"Print in nixbase32."`
	Base16 bool     `xor:"enc" name:"base16" help:"Print in base16 (the default)."`
	Base64 bool     `xor:"enc" name:"base64" help:"Print in base64."`
	SRI    bool     `xor:"enc" name:"sri" help:"Print as an SRI hash (algo-base64)."`
	Files  []string `arg:"" name:"file" help:"Files whose contents to hash."`
}

// Run prints one hash per file, in argument order.
func (c *HashFileCmd) Run() error {
	algo, err := nixhash.ParseAlgo(c.Type)
	if err != nil {
		return err
	}
	enc := hashEncodings["base16"]
	switch {
	case c.Base32:
		enc = hashEncodings["nix32"]
	case c.Base64:
		enc = hashEncodings["base64"]
	case c.SRI:
		enc = hashEncodings["sri"]
	}
	for _, name := range c.Files {
		h, err := hashFileContents(algo, name)
		if err != nil {
			return err
		}
		fmt.Println(enc(h))
	}
	return nil
}

// hashFileContents hashes the bytes of the file name (following symlinks, as nix-hash --flat does).
func hashFileContents(algo nixhash.Algo, name string) (nixhash.Hash, error) {
	f, err := os.Open(name)
	if err != nil {
		return nixhash.Hash{}, err
	}
	defer f.Close()
	h := algo.New()
	if _, err := io.Copy(h, f); err != nil {
		return nixhash.Hash{}, fmt.Errorf("reading %s: %w", name, err)
	}
	return nixhash.Hash{Algo: algo, Digest: h.Sum(nil)}, nil
}

// HashConvertCmd is `privnix hash convert`, the equivalent of `nix hash to-*`.
type HashConvertCmd struct {
	To     string   `required:"" enum:"nix32,base32,base16,base64,sri" help:"Output encoding: nix32 (alias base32), base16, base64 or sri."`
	Type   string   `enum:"md5,sha1,sha256,sha512," default:"" help:"Algorithm of hashes given without a prefix; prefixed hashes must match it."`
	Hashes []string `arg:"" name:"hash" help:"Hashes as algo:<base16|nix32|base64>, SRI algo-<base64>, or bare with --type."`
}

// Run prints each hash in the requested encoding.
func (c *HashConvertCmd) Run() error {
	enc := hashEncodings[c.To]
	for _, s := range c.Hashes {
		h, err := parseHashArg(s, c.Type)
		if err != nil {
			return err
		}
		fmt.Println(enc(h))
	}
	return nil
}

// parseHashArg parses a typed or SRI hash, or a bare one of algorithm typ,
// refusing a prefix that disagrees with typ as `nix hash` does.
func parseHashArg(s, typ string) (nixhash.Hash, error) {
	if strings.ContainsAny(s, ":-") {
		h, err := nixhash.Parse(s)
		if err != nil {
			return nixhash.Hash{}, err
		}
		if typ != "" && h.Algo.String() != typ {
			return nixhash.Hash{}, fmt.Errorf("hash '%s' should have type '%s'", s, typ)
		}
		return h, nil
	}
	if typ == "" {
		return nixhash.Hash{}, fmt.Errorf("hash '%s' has no algorithm prefix; give --type", s)
	}
	a, err := nixhash.ParseAlgo(typ)
	if err != nil {
		return nixhash.Hash{}, err
	}
	return nixhash.ParseAs(s, a)
}

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"privnix/nix/narinfo"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// KeyCmd is `privnix key`: signing keys in Nix's name:base64 format and
// signatures over store path fingerprints.
type KeyCmd struct {
	Generate KeyGenerateCmd `cmd:"" help:"Generate an Ed25519 key pair (nix-store --generate-binary-cache-key)."`
	Sign     KeySignCmd     `cmd:"" help:"Sign store paths' fingerprints (1;path;narHash;narSize;refs)."`
	Verify   KeyVerifyCmd   `cmd:"" help:"Verify a signature of a store path's fingerprint."`
}

// KeyGenerateCmd is `privnix key generate`.
type KeyGenerateCmd struct {
	Name       string `arg:"" help:"Key name, e.g. cache.example.org-1."`
	SecretFile string `name:"secret-file" help:"Write the secret key here (mode 0600, must not exist) instead of printing it."`
	PublicFile string `name:"public-file" help:"Write the public key here (must not exist) instead of printing it."`
}

// Run prints the secret key, then the public key, or writes them to files.
func (c *KeyGenerateCmd) Run() error {
	sk, pk, err := narinfo.GenerateKey(c.Name)
	if err != nil {
		return err
	}
	if err := emitKey(c.SecretFile, sk.String(), 0o600); err != nil {
		return err
	}
	return emitKey(c.PublicFile, pk.String(), 0o644)
}

// emitKey prints text, or writes it to a new file without a trailing newline as Nix does.
func emitKey(file, text string, mode os.FileMode) error {
	if file == "" {
		fmt.Println(text)
		return nil
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("refusing to write key: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pathInfoFlags describe the store path whose fingerprint is signed or checked.
// narHash and narSize are computed from the path on disk when not given.
type pathInfoFlags struct {
	NarHash  string   `name:"nar-hash" help:"NAR hash of the path (any typed form, sha256); default: computed from the path on disk."`
	NarSize  uint64   `name:"nar-size" help:"NAR size in bytes; default: computed from the path on disk."`
	Ref      []string `name:"ref" help:"A reference (store path or base name; repeat, include the path itself if it refers to itself)."`
	StoreDir string   `name:"store-dir" env:"NIX_STORE_DIR" default:"/nix/store" help:"Store directory."`
}

// fingerprint computes the fingerprint of the store path abs.
func (f *pathInfoFlags) fingerprint(abs string) (string, error) {
	dir, err := storepath.NewDir(f.StoreDir)
	if err != nil {
		return "", err
	}
	p, err := dir.Parse(abs)
	if err != nil {
		return "", err
	}
	refs := make([]storepath.Path, 0, len(f.Ref))
	for _, r := range f.Ref {
		var rp storepath.Path
		if strings.HasPrefix(r, "/") {
			rp, err = dir.Parse(r)
		} else {
			rp, err = storepath.ParseBase(r)
		}
		if err != nil {
			return "", fmt.Errorf("--ref %s: %w", r, err)
		}
		refs = append(refs, rp)
	}
	h, size, err := f.narInfo(abs)
	if err != nil {
		return "", err
	}
	return narinfo.Fingerprint(dir, p, h, size, refs), nil
}

// narInfo returns the NAR hash and size from the flags, or from the path on disk.
func (f *pathInfoFlags) narInfo(abs string) (nixhash.Hash, uint64, error) {
	if (f.NarHash == "") != (f.NarSize == 0) {
		return nixhash.Hash{}, 0, errors.New("give both --nar-hash and a non-zero --nar-size, or neither")
	}
	if f.NarHash == "" {
		return dumpNAR(nixhash.SHA256, abs)
	}
	h, err := nixhash.Parse(f.NarHash)
	if err != nil {
		return nixhash.Hash{}, 0, fmt.Errorf("--nar-hash: %w", err)
	}
	if h.Algo != nixhash.SHA256 {
		return nixhash.Hash{}, 0, fmt.Errorf("--nar-hash must be sha256, not %s", h.Algo)
	}
	return h, f.NarSize, nil
}

// KeySignCmd is `privnix key sign`.
type KeySignCmd struct {
	KeyFile string   `name:"key-file" required:"" help:"Secret key file (name:base64, as nix-store --generate-binary-cache-key writes)."`
	Paths   []string `arg:"" name:"path" help:"Store paths to sign."`
	pathInfoFlags
}

// Run prints one signature (keyname:base64) per path, in argument order.
func (c *KeySignCmd) Run() error {
	if c.NarHash != "" && len(c.Paths) > 1 {
		return errors.New("--nar-hash and --nar-size describe one path; sign one path at a time")
	}
	text, err := os.ReadFile(c.KeyFile)
	if err != nil {
		return err
	}
	sk, err := narinfo.ParseSecretKey(strings.TrimSpace(string(text)))
	if err != nil {
		return fmt.Errorf("%s: %w", c.KeyFile, err)
	}
	for _, p := range c.Paths {
		fp, err := c.fingerprint(p)
		if err != nil {
			return err
		}
		fmt.Println(sk.Sign(fp))
	}
	return nil
}

// KeyVerifyCmd is `privnix key verify`.
type KeyVerifyCmd struct {
	PublicKey []string `name:"public-key" required:"" help:"Trusted public key (name:base64); repeat for several."`
	Sig       []string `name:"sig" required:"" help:"Signature (keyname:base64); repeat for several. One valid signature suffices."`
	Path      string   `arg:"" help:"Store path whose fingerprint was signed."`
	pathInfoFlags
}

// Run succeeds when at least one signature verifies under a key of its name.
func (c *KeyVerifyCmd) Run() error {
	var keys []narinfo.PublicKey
	for _, k := range c.PublicKey {
		pk, err := narinfo.ParsePublicKey(k)
		if err != nil {
			return err
		}
		keys = append(keys, pk)
	}
	var sigs []narinfo.Signature
	for _, s := range c.Sig {
		sig, err := narinfo.ParseSignature(s)
		if err != nil {
			return err
		}
		sigs = append(sigs, sig)
	}
	fp, err := c.fingerprint(c.Path)
	if err != nil {
		return err
	}
	if !narinfo.VerifyAny(fp, sigs, keys) {
		return fmt.Errorf("no signature of %s verifies under the given keys (fingerprint %q)", c.Path, fp)
	}
	fmt.Printf("%s: signature verified\n", c.Path)
	return nil
}

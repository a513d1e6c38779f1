// Package narinfo is Nix's binary-cache metadata: path-info fingerprints,
// Ed25519 keys and signatures in Nix's "name:base64" form, and .narinfo text.
package narinfo

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// ErrInvalid is wrapped by every refusal of a malformed key, signature or narinfo.
var ErrInvalid = errors.New("invalid narinfo")

// Fingerprint returns the string Nix signs for a store path:
// "1;<path>;sha256:<nix32 narHash>;<narSize>;<sorted refs joined by ','>".
func Fingerprint(d storepath.Dir, p storepath.Path, narHash nixhash.Hash, narSize uint64, refs []storepath.Path) string {
	abs := make([]string, 0, len(refs))
	for _, r := range refs {
		abs = append(abs, d.String(r))
	}
	slices.Sort(abs)
	abs = slices.Compact(abs)
	return "1;" + d.String(p) + ";" + narHash.String() + ";" + strconv.FormatUint(narSize, 10) + ";" + strings.Join(abs, ",")
}

// SecretKey is a named Ed25519 signing key.
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey // 64 bytes: seed ‖ public key, as libsodium stores it
}

// PublicKey is a named Ed25519 verification key.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// Signature is a detached Ed25519 signature made by the key called KeyName.
type Signature struct {
	KeyName string
	Sig     []byte
}

// GenerateKey makes a new key pair called name.
func GenerateKey(name string) (SecretKey, PublicKey, error) {
	if err := checkKeyName(name); err != nil {
		return SecretKey{}, PublicKey{}, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SecretKey{}, PublicKey{}, fmt.Errorf("generating key %q: %w", name, err)
	}
	return SecretKey{Name: name, Key: priv}, PublicKey{Name: name, Key: pub}, nil
}

// checkKeyName refuses names that cannot be written in a key string or in
// nix.conf's whitespace-separated key lists.
func checkKeyName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty key name", ErrInvalid)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c == ':' || c == 0x7f {
			return fmt.Errorf("%w: key name %q contains %q", ErrInvalid, name, c)
		}
	}
	return nil
}

// splitNamed splits "name:base64" and decodes exactly n bytes.
func splitNamed(what, s string, n int) (string, []byte, error) {
	name, b64, ok := strings.Cut(s, ":")
	if !ok {
		return "", nil, fmt.Errorf("%w: %s has no \"name:\" prefix", ErrInvalid, what)
	}
	if err := checkKeyName(name); err != nil {
		return "", nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(b64) != base64.StdEncoding.EncodedLen(n) {
		return "", nil, fmt.Errorf("%w: %s %q is %d base64 characters, want %d", ErrInvalid, what, name, len(b64), base64.StdEncoding.EncodedLen(n))
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(raw) != n {
		return "", nil, fmt.Errorf("%w: %s %q is not valid base64 of %d bytes", ErrInvalid, what, name, n)
	}
	return name, raw, nil
}

// ParseSecretKey parses "name:<base64 of 64 bytes>" and checks that the
// public half matches the seed.
func ParseSecretKey(s string) (SecretKey, error) {
	name, raw, err := splitNamed("secret key", s, ed25519.PrivateKeySize)
	if err != nil {
		return SecretKey{}, err
	}
	k := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
	if string(k[ed25519.SeedSize:]) != string(raw[ed25519.SeedSize:]) {
		return SecretKey{}, fmt.Errorf("%w: secret key %q: public half does not match the seed", ErrInvalid, name)
	}
	return SecretKey{Name: name, Key: k}, nil
}

// ParsePublicKey parses "name:<base64 of 32 bytes>".
func ParsePublicKey(s string) (PublicKey, error) {
	name, raw, err := splitNamed("public key", s, ed25519.PublicKeySize)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(raw)}, nil
}

// ParseSignature parses "keyname:<base64 of 64 bytes>".
func ParseSignature(s string) (Signature, error) {
	name, raw, err := splitNamed("signature", s, ed25519.SignatureSize)
	if err != nil {
		return Signature{}, err
	}
	return Signature{KeyName: name, Sig: raw}, nil
}

// String returns "keyname:<base64>".
func (s Signature) String() string { return s.KeyName + ":" + base64.StdEncoding.EncodeToString(s.Sig) }

// String returns "name:<base64 of 64 bytes>", the secret key file format.
func (k SecretKey) String() string { return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key) }

// String returns "name:<base64 of 32 bytes>", the trusted-public-keys format.
func (k PublicKey) String() string { return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key) }

// Public returns the public half of k.
func (k SecretKey) Public() PublicKey {
	return PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

// Sign signs fingerprint.
func (k SecretKey) Sign(fingerprint string) Signature {
	return Signature{KeyName: k.Name, Sig: ed25519.Sign(k.Key, []byte(fingerprint))}
}

// Verify reports whether s is k's valid signature of fingerprint.
func (k PublicKey) Verify(fingerprint string, s Signature) bool {
	return s.KeyName == k.Name && len(k.Key) == ed25519.PublicKeySize &&
		len(s.Sig) == ed25519.SignatureSize && ed25519.Verify(k.Key, []byte(fingerprint), s.Sig)
}

// VerifyAny reports whether any signature is valid under the key of its name.
func VerifyAny(fingerprint string, sigs []Signature, keys []PublicKey) bool {
	for _, s := range sigs {
		for _, k := range keys {
			if k.Verify(fingerprint, s) {
				return true
			}
		}
	}
	return false
}

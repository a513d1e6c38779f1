package narinfo

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	sk, pk, err := GenerateKey("cache.example.org-1")
	if err != nil {
		t.Fatal(err)
	}
	sk2, err := ParseSecretKey(sk.String())
	if err != nil || !sk2.Key.Equal(sk.Key) || sk2.Name != sk.Name {
		t.Fatalf("ParseSecretKey(String()) = %v, %v", sk2, err)
	}
	pk2, err := ParsePublicKey(pk.String())
	if err != nil || !pk2.Key.Equal(pk.Key) || sk.Public().String() != pk.String() {
		t.Fatalf("ParsePublicKey(String()) = %v, %v", pk2, err)
	}
	fp := "1;/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo;sha256:0nxw9ixxlr4jq9xny3gyp0anrhc89rk34qz79yv70m0az6wwniih;160;"
	sig := sk.Sign(fp)
	if !pk.Verify(fp, sig) {
		t.Fatal("own signature does not verify")
	}
	other, _, _ := GenerateKey("cache.example.org-1")
	renamed := pk
	renamed.Name = "other"
	tests := []struct {
		name string
		keys []PublicKey
		sig  Signature
		fp   string
		want bool
	}{
		{"good", []PublicKey{pk}, sig, fp, true},
		{"among others", []PublicKey{other.Public(), pk}, sig, fp, true},
		{"wrong key same name", []PublicKey{other.Public()}, sig, fp, false},
		{"right key other name", []PublicKey{renamed}, sig, fp, false},
		{"changed fingerprint", []PublicKey{pk}, sig, fp + "x", false},
		{"short sig", []PublicKey{pk}, Signature{KeyName: sig.KeyName, Sig: sig.Sig[:63]}, fp, false},
		{"no keys", nil, sig, fp, false},
	}
	for _, tt := range tests {
		if got := VerifyAny(tt.fp, []Signature{tt.sig}, tt.keys); got != tt.want {
			t.Errorf("%s: VerifyAny = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	sk, pk, _ := GenerateKey("k")
	mismatched := append(append([]byte{}, sk.Key[:32]...), make([]byte, 32)...)
	bad := SecretKey{Name: "k", Key: ed25519.PrivateKey(mismatched)}.String()
	tests := []struct {
		name string
		fn   func(string) error
		in   string
	}{
		{"secret no name", secretErr, ":" + strings.SplitN(sk.String(), ":", 2)[1]},
		{"secret no colon", secretErr, strings.Replace(sk.String(), ":", "", 1)},
		{"secret is public", secretErr, pk.String()},
		{"secret mismatched halves", secretErr, bad},
		{"secret space in name", secretErr, "a b" + sk.String()[1:]},
		{"public is secret", publicErr, sk.String()},
		{"public bad base64", publicErr, "k:" + strings.Repeat("!", 44)},
		{"public no padding", publicErr, strings.TrimSuffix(pk.String(), "=")},
		{"sig short", sigErr, "k:" + strings.Repeat("A", 84)},
		{"sig no name", sigErr, strings.Repeat("A", 86) + "=="},
		{"sig newline", sigErr, "k:" + strings.Repeat("A", 86) + "==\n"},
	}
	for _, tt := range tests {
		if err := tt.fn(tt.in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tt.name, err)
		}
	}
	if _, _, err := GenerateKey("bad:name"); err == nil {
		t.Error("GenerateKey took a name with ':'")
	}
}

func secretErr(s string) error { _, err := ParseSecretKey(s); return err }
func publicErr(s string) error { _, err := ParsePublicKey(s); return err }
func sigErr(s string) error    { _, err := ParseSignature(s); return err }

func FuzzParseSignature(f *testing.F) {
	f.Add("test1:qEZTKGa2QnnYoxkyJP19b7TdI57kL1vqZzW3juVrF8iLyprI0OmcdH03RMpuCrvc48eWfT1lllNg5OQb5rvLDA==")
	f.Add("test1:WSkr2iK6ExnHPdgaTgW1vtxvssyF4AGAjRpMTsTyGoM=")
	f.Fuzz(func(t *testing.T, s string) {
		if sig, err := ParseSignature(s); err == nil && sig.String() != s {
			t.Fatalf("ParseSignature(%q).String() = %q", s, sig.String())
		}
		if k, err := ParsePublicKey(s); err == nil && k.String() != s {
			t.Fatalf("ParsePublicKey(%q).String() = %q", s, k.String())
		}
		if k, err := ParseSecretKey(s); err == nil && k.String() != s {
			t.Fatalf("ParseSecretKey(%q).String() = %q", s, k.String())
		}
	})
}

package integration

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// Signatures: a trusted user signs with nix store sign and nix store verify
// accepts them; an untrusted user may not add signatures (nix-daemon's text).
// Caches: nix copy --to a file:// cache and back --from it.
func TestSignVerifyAndCopy(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	inputs(t, in)
	d := testenv.StartPrivnixd(t, s)
	nixCmd := []string{"nix", "--extra-experimental-features", "nix-command"}
	must := func(user string, args ...string) string {
		t.Helper()
		r := s.Run(t, user, nil, args[0], args[1:]...)
		if r.Err != nil {
			t.Fatalf("%s %v: %v\n%s", user, args, r.Err, r.Stderr)
		}
		return strings.TrimSpace(r.Stdout)
	}
	p := must(testenv.Bob, "nix-store", "--add", filepath.Join(in, "tree"))

	keys := filepath.Join(s.Root, "keys")
	os.MkdirAll(keys, 0o755)
	os.Chmod(keys, 0o777)
	must(testenv.Bob, "nix-store", "--generate-binary-cache-key", "privnix-test-1", keys+"/secret", keys+"/public")
	pub, err := os.ReadFile(keys + "/public")
	if err != nil {
		t.Fatal(err)
	}
	must(testenv.Bob, append(nixCmd, "store", "sign", "-k", keys+"/secret", p)...)
	must(testenv.Alice, append(nixCmd, "store", "verify", "--sigs-needed", "1", "--trusted-public-keys", string(pub), p)...)
	info := must(testenv.Alice, append(nixCmd, "path-info", "--sigs", p)...)
	if !strings.Contains(info, "privnix-test-1:") {
		t.Errorf("path-info --sigs = %q, want the new signature", info)
	}
	alicesKey := filepath.Join(keys, "alice-secret")
	must(testenv.Alice, "nix-store", "--generate-binary-cache-key", "alice-1", alicesKey, keys+"/alice-public")
	r := s.Run(t, testenv.Alice, nil, nixCmd[0], append(nixCmd[1:], "store", "sign", "-k", alicesKey, p)...)
	if r.Err == nil || !strings.Contains(r.Stderr, "you are not privileged to add signatures") {
		t.Errorf("untrusted nix store sign: %v %q", r.Err, r.Stderr)
	}

	cache := filepath.Join(s.Root, "cache")
	os.MkdirAll(cache, 0o777)
	os.Chmod(cache, 0o777)
	must(testenv.Bob, append(nixCmd, "copy", "--to", "file://"+cache, p)...)

	hash := must(testenv.Alice, "nix-store", "-q", "--hash", p)

	// Back from the cache into an empty store (same store directory): the
	// path is content-addressed, so an untrusted user may copy it in.
	d.Stop(t)
	s.Reset(t)
	testenv.StartPrivnixd(t, s)
	must(testenv.Alice, append(nixCmd, "copy", "--from", "file://"+cache, p)...)
	if got := must(testenv.Alice, "nix-store", "-q", "--hash", p); got != hash {
		t.Errorf("after nix copy --from: hash %s, want %s", got, hash)
	}
	must(testenv.Alice, "nix-store", "--verify-path", p)
}

// A 256 MiB file through nix-daemon and through privnixd: the same path.
func TestAddLargeFile(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	big := filepath.Join(s.Root, "in", "big")
	os.MkdirAll(filepath.Dir(big), 0o755)
	os.Chmod(filepath.Dir(big), 0o755)
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	if _, err := io.CopyN(f, rng, 256<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Chmod(big, 0o644)
	add := func() string {
		r := s.Run(t, testenv.Alice, nil, "nix-store", "--add", big)
		if r.Err != nil {
			t.Fatalf("nix-store --add: %v\n%s", r.Err, r.Stderr)
		}
		h := s.Run(t, testenv.Alice, nil, "nix-store", "-q", "--hash", "--size", strings.TrimSpace(r.Stdout))
		return r.Stdout + h.Stdout
	}
	nd := testenv.StartNixDaemon(t, s)
	want := add()
	nd.Stop(t)
	s.Reset(t)
	testenv.StartPrivnixd(t, s)
	if got := add(); got != want {
		t.Errorf("privnixd: %q, nix-daemon: %q", got, want)
	}
}

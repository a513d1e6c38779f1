package fetcher

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"privnix/ipc/msg"
	"privnix/nix/nar"
	"privnix/nix/narinfo"
	"privnix/nix/narinfofile"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

func TestParseCacheInfo(t *testing.T) {
	for _, c := range []struct {
		in   string
		want msg.CacheInfo
		bad  bool
	}{
		{"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", msg.CacheInfo{StoreDir: "/nix/store", WantMassQuery: true, Priority: 40}, false},
		{"StoreDir: /nix/store\n", msg.CacheInfo{StoreDir: "/nix/store", Priority: DefaultPriority}, false},
		{"", msg.CacheInfo{Priority: DefaultPriority}, false},
		{"Unknown: x\r\nPriority: 10\r\n", msg.CacheInfo{Priority: 10}, false},
		{"Priority: -1\n", msg.CacheInfo{}, true},
		{"Priority: 99999999999\n", msg.CacheInfo{}, true},
		{"StoreDir: relative\n", msg.CacheInfo{}, true},
		{"no colon\n", msg.CacheInfo{}, true},
	} {
		got, err := ParseCacheInfo([]byte(c.in))
		if (err != nil) != c.bad || (!c.bad && got != c.want) {
			t.Errorf("ParseCacheInfo(%q) = %+v, %v", c.in, got, err)
		}
	}
}

func FuzzParseCacheInfo(f *testing.F) {
	f.Add([]byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"))
	f.Add([]byte("Priority: 4\r\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ParseCacheInfo(data)
		if err != nil {
			return
		}
		if info.StoreDir == "" {
			info.StoreDir = "/nix/store"
		}
		if err := info.Validate(); err != nil {
			t.Fatalf("accepted %q but the answer is invalid: %v", data, err)
		}
	})
}

// testNar is a small NAR: a directory with a file and a symlink.
func testNar(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	w := nar.NewWriter(&b)
	content := strings.Repeat("substitute me\n", 1000)
	for _, err := range []error{w.StartDir(), w.Entry("file"), w.File(false, uint64(len(content)), strings.NewReader(content)),
		w.Entry("link"), w.Symlink("file"), w.EndDir(), w.Close()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// compress runs the system's compressor (xz, zstd, bzip2): independent
// implementations of the formats caches use.
func compress(t *testing.T, tool string, data []byte) []byte {
	t.Helper()
	if tool == "none" {
		return data
	}
	cmd := exec.Command(tool, "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return out
}

// cacheDir writes a cache with one narinfo and its NAR per compression.
func cacheDir(t *testing.T, dir storepath.Dir, narBytes []byte) (string, map[string]*narinfofile.NarInfo) {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "nar"), 0o755)
	os.WriteFile(filepath.Join(root, "nix-cache-info"), []byte("StoreDir: "+string(dir)+"\nPriority: 30\n"), 0o644)
	infos := map[string]*narinfofile.NarInfo{}
	sk, _, _ := narinfo.GenerateKey("test-1")
	for i, c := range msg.Compressions {
		file := compress(t, map[string]string{"none": "none", "xz": "xz", "zstd": "zstd", "bzip2": "bzip2"}[c], narBytes)
		p, err := dir.MakePath("output:out", nixhash.Sum(nixhash.SHA256, []byte{byte(i)}), "test-"+c)
		if err != nil {
			t.Fatal(err)
		}
		ni := &narinfofile.NarInfo{StorePath: p, URL: "nar/" + p.HashPart() + ".nar." + c, Compression: c,
			FileHash: nixhash.Sum(nixhash.SHA256, file), FileSize: uint64(len(file)),
			NarHash: nixhash.Sum(nixhash.SHA256, narBytes), NarSize: uint64(len(narBytes))}
		ni.Sigs = []narinfo.Signature{sk.Sign(ni.Fingerprint(dir))}
		os.WriteFile(filepath.Join(root, ni.URL), file, 0o644)
		os.WriteFile(filepath.Join(root, p.HashPart()+".narinfo"), []byte(ni.String(dir)), 0o644)
		infos[c] = ni
	}
	return root, infos
}

// Both kinds of cache: info, narinfo (found, absent), and every
// compression's NAR back byte for byte.
func TestCaches(t *testing.T) {
	dir := storepath.Dir("/nix/store")
	narBytes := testNar(t)
	root, infos := cacheDir(t, dir, narBytes)
	srv := httptest.NewServer(http.FileServer(http.Dir(root)))
	defer srv.Close()
	ctx := context.Background()
	for _, url := range []string{"file://" + root, srv.URL} {
		c, err := NewCache(url, 0)
		if err != nil {
			t.Fatal(err)
		}
		if info := c.Info(ctx, string(dir)); info != (msg.CacheInfo{StoreDir: string(dir), Priority: 30}) {
			t.Errorf("%s: info %+v", url, info)
		}
		if info := c.Info(ctx, "/other/store"); !strings.Contains(info.Err, "is for Nix stores with prefix '/nix/store', not '/other/store'") {
			t.Errorf("%s: other store dir: %+v", url, info)
		}
		absent, err := c.NarInfo(ctx, dir, "00000000000000000000000000000000")
		if err != nil || absent.Found {
			t.Errorf("%s: absent narinfo: %+v, %v", url, absent, err)
		}
		for comp, ni := range infos {
			got, err := c.NarInfo(ctx, dir, ni.StorePath.HashPart())
			if err != nil || !got.Found || got.NarHash != ni.NarHash.String() || got.Compression != comp {
				t.Fatalf("%s %s: narinfo %+v, %v", url, comp, got, err)
			}
			var out bytes.Buffer
			req := &msg.GetNar{URL: got.URL, Compression: got.Compression, FileSize: got.FileSize, NarSize: got.NarSize}
			sent, err := c.Nar(ctx, req, &out)
			if err != nil || !bytes.Equal(out.Bytes(), narBytes) || sent.NarBytes != uint64(len(narBytes)) {
				t.Errorf("%s %s: NAR of %d bytes, %+v, %v", url, comp, out.Len(), sent, err)
			}
			// A narinfo that understates the sizes is refused.
			for _, lie := range []*msg.GetNar{
				{URL: got.URL, Compression: comp, FileSize: got.FileSize, NarSize: got.NarSize - 1},
				{URL: got.URL, Compression: comp, FileSize: got.FileSize, NarSize: got.NarSize + 1},
				{URL: got.URL, Compression: comp, FileSize: got.FileSize - 1, NarSize: got.NarSize},
			} {
				if _, err := c.Nar(ctx, lie, &bytes.Buffer{}); err == nil {
					t.Errorf("%s %s: sizes %d/%d accepted", url, comp, lie.FileSize, lie.NarSize)
				}
			}
		}
		if _, err := c.Nar(ctx, &msg.GetNar{URL: "../etc/passwd", Compression: "none", NarSize: 10}, &bytes.Buffer{}); err == nil {
			t.Errorf("%s: a NAR URL with .. was fetched", url)
		}
	}
}

// A narinfo for another path than the one asked for is refused.
func TestNarInfoForAnotherPath(t *testing.T) {
	dir := storepath.Dir("/nix/store")
	root, infos := cacheDir(t, dir, testNar(t))
	ni := infos["xz"]
	other := "11111111111111111111111111111111"
	b, _ := os.ReadFile(filepath.Join(root, ni.StorePath.HashPart()+".narinfo"))
	os.WriteFile(filepath.Join(root, other+".narinfo"), b, 0o644)
	c, _ := NewCache("file://"+root, 0)
	if _, err := c.NarInfo(context.Background(), dir, other); err == nil || !strings.Contains(err.Error(), "is for another path") {
		t.Errorf("got %v", err)
	}
}

func TestNewCacheRefuses(t *testing.T) {
	for _, u := range []string{"s3://bucket", "file://relative", "http://", "https://h/x?priority=1", "http://user:pw@h/", "ssh://h"} {
		if _, err := NewCache(u, 0); err == nil {
			t.Errorf("NewCache(%q) accepted", u)
		}
	}
}

// Transient HTTP failures (5xx) are tried again, up to Attempts; a 404 is
// an answer, asked once.
func TestRetries(t *testing.T) {
	dir := storepath.Dir("/nix/store")
	root, infos := cacheDir(t, dir, testNar(t))
	files := http.FileServer(http.Dir(root))
	ni := infos["zstd"]
	want := "/" + ni.StorePath.HashPart() + ".narinfo"
	var failures atomic.Int32 // how many requests for want still fail
	var asked, absent atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == want:
			asked.Add(1)
			if failures.Add(-1) >= 0 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
		case strings.HasSuffix(r.URL.Path, ".narinfo"):
			absent.Add(1)
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, err := NewCache(srv.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	failures.Store(Attempts - 1)
	got, err := c.NarInfo(ctx, dir, ni.StorePath.HashPart())
	if err != nil || !got.Found || asked.Load() != Attempts {
		t.Fatalf("after %d failures: %+v, %v (%d requests)", Attempts-1, got, err, asked.Load())
	}
	asked.Store(0)
	failures.Store(Attempts)
	if _, err := c.NarInfo(ctx, dir, ni.StorePath.HashPart()); err == nil || !strings.Contains(err.Error(), "HTTP error 503") || asked.Load() != Attempts {
		t.Fatalf("a cache that keeps failing: %v (%d requests)", err, asked.Load())
	}
	if got, err := c.NarInfo(ctx, dir, "00000000000000000000000000000000"); err != nil || got.Found || absent.Load() != 1 {
		t.Fatalf("absent: %+v, %v (%d requests)", got, err, absent.Load())
	}
}

package narfs

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"privnix/nix/narreader"
)

const (
	benchFileSize = 256 << 20
	benchTreeSize = 20000
)

// writeRandomFile writes size pseudo-random bytes to path.
func writeRandomFile(b *testing.B, path string, size int, seed uint64) {
	b.Helper()
	f, err := os.Create(path)
	must(b, err)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= len(buf) {
		r.Read(buf)
		_, err := f.Write(buf[:min(left, len(buf))])
		must(b, err)
	}
	must(b, f.Close())
}

// writeTree writes n small files, 100 per directory, one in ten executable.
func writeTree(b *testing.B, root string, n int) {
	b.Helper()
	must(b, os.Mkdir(root, 0o755))
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 8192)
	for i := 0; i < n; i++ {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			must(b, os.Mkdir(dir, 0o755))
		}
		mode := os.FileMode(0o644)
		if i%10 == 0 {
			mode = 0o755
		}
		data := buf[:r.IntN(len(buf))]
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		must(b, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), data, mode))
	}
}

// sha256sumTime is the wall time of sha256sum on path (best of 3).
func sha256sumTime(b *testing.B, path string) time.Duration {
	b.Helper()
	tool, err := exec.LookPath("sha256sum")
	if err != nil {
		b.Fatalf("sha256sum (coreutils) is needed for the comparison: %v", err)
	}
	best := time.Duration(1 << 62)
	for i := 0; i < 3; i++ {
		start := time.Now()
		if out, err := exec.Command(tool, path).CombinedOutput(); err != nil {
			b.Fatalf("sha256sum: %v\n%s", err, out)
		}
		best = min(best, time.Since(start))
	}
	return best
}

func dumpHash(b *testing.B, path string) int64 {
	h := sha256.New()
	cw := &countWriter{w: h}
	if err := DumpPath(cw, path); err != nil {
		b.Fatal(err)
	}
	return cw.n
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}

// BenchmarkDumpHashLargeFile serialises and hashes a 256 MiB file and reports
// its speed relative to sha256sum on the same file (1.0 = as fast).
func BenchmarkDumpHashLargeFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big")
	writeRandomFile(b, path, benchFileSize, 1)
	ref := sha256sumTime(b, path)
	n := dumpHash(b, path) // warm the page cache like sha256sum had it
	b.SetBytes(n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dumpHash(b, path)
	}
	perOp := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(ref)/float64(perOp), "speed/sha256sum")
}

// BenchmarkDumpHashTree serialises and hashes a tree of 20,000 files.
func BenchmarkDumpHashTree(b *testing.B) {
	root := filepath.Join(b.TempDir(), "tree")
	writeTree(b, root, benchTreeSize)
	n := dumpHash(b, root)
	b.SetBytes(n)
	unix.Sync()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dumpHash(b, root)
	}
	b.ReportMetric(float64(benchTreeSize)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// nixRestoreTime is the wall time of nix-store --restore of nar into a new path under dir.
func nixRestoreTime(b *testing.B, nar []byte, dir string) time.Duration {
	b.Helper()
	cmd := exec.Command(nixTool(b, "nix-store"), "--restore", filepath.Join(dir, "nix"))
	cmd.Stdin = bytes.NewReader(nar)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("nix-store --restore: %v\n%s", err, out)
	}
	return time.Since(start)
}

// benchRestore restores the NAR of src repeatedly and reports its speed
// relative to one nix-store --restore of the same NAR (1.0 = as fast).
func benchRestore(b *testing.B, src string, files int) {
	var nar bytes.Buffer
	must(b, DumpPath(&nar, src))
	out := filepath.Join(b.TempDir(), "out")
	must(b, os.Mkdir(out, 0o755))
	fd := openDir(b, out)
	b.SetBytes(int64(nar.Len()))
	unix.Sync() // do not charge the set-up's writeback to the restores
	ref := nixRestoreTime(b, nar.Bytes(), out)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A fresh name each time: deleting between runs made creation slow on ext4.
		if err := Restore(bytes.NewReader(nar.Bytes()), fd, fmt.Sprintf("r%d", i), narreader.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(ref)/float64(b.Elapsed()/time.Duration(b.N)), "speed/nix-store")
	if files > 0 {
		b.ReportMetric(float64(files)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
	}
}

// BenchmarkRestoreLargeFile unpacks the NAR of a 256 MiB file.
func BenchmarkRestoreLargeFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big")
	writeRandomFile(b, path, benchFileSize, 2)
	benchRestore(b, path, 0)
}

// BenchmarkRestoreTree unpacks the NAR of a tree of 20,000 files.
func BenchmarkRestoreTree(b *testing.B) {
	root := filepath.Join(b.TempDir(), "tree")
	writeTree(b, root, benchTreeSize)
	benchRestore(b, root, benchTreeSize)
}

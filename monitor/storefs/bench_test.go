package storefs

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"privnix/nix/nixbase32"
	"privnix/nix/nixhash"
)

// Benchmarks (go test -run NONE -bench . ./monitor/storefs): Seal of one
// 256 MiB file, reported against sha256sum of the same file (also with 1,000
// reference candidates), and of a 20,000-file tree, reported against
// nix-store --dump | sha256sum; with and without Copy. Between iterations the
// sealed tree is handed back to the writer (untimed).

func BenchmarkSealLargeFile(b *testing.B) {
	const size = 256 << 20
	var candidates []string
	for i := 0; i < 1000; i++ {
		candidates = append(candidates, nixbase32.EncodeToString(nixhash.Sum(nixhash.SHA256, []byte(fmt.Sprint(i))).Digest[:20]))
	}
	for _, mode := range []string{"take-over", "copy", "take-over+scan"} {
		copyMode := mode == "copy"
		var cand []string
		if mode == "take-over+scan" {
			cand = candidates
		}
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b)
			st := e.newStaging(b)
			write(b, st, op{Op: "big", Path: "out", N: size})
			out := filepath.Join(e.path(st), "out")
			ref := bestOf(3, func() { run(b, "sha256sum", out) })
			b.SetBytes(size)
			b.ResetTimer()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: copyMode, Candidates: cand}); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				resetForBench(b, e, st)
				b.StartTimer()
			}
			b.ReportMetric(float64(total)/float64(b.N)/float64(ref), "x_sha256sum")
		})
	}
}

func BenchmarkSealManyFiles(b *testing.B) {
	const files = 20000
	for _, copyMode := range []bool{false, true} {
		b.Run(fmt.Sprintf("copy=%v", copyMode), func(b *testing.B) {
			e := newEnv(b)
			st := e.newStaging(b)
			write(b, st, op{Op: "many", Path: "out", N: files})
			ref := bestOf(1, func() {
				run(b, "sh", "-c", `nix-store --dump "$1" | sha256sum`, "sh", filepath.Join(e.path(st), "out"))
			})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: copyMode})
				if err != nil {
					b.Fatal(err)
				}
				if res.FileCount != files+files/1000+1 {
					b.Fatalf("FileCount %d", res.FileCount)
				}
				b.StopTimer()
				resetForBench(b, e, st)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/files, "µs/file")
			b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(ref), "x_nix-store-dump")
		})
	}
}

// resetForBench gives the sealed tree back to the writer as out, so that the
// same Staging can be sealed again.
func resetForBench(b *testing.B, e *env, st *Staging) {
	dir := e.path(st)
	uid := fmt.Sprint(writerUID)
	script := `cd "$1" && if [ -e sealed ]; then mv sealed out; fi && chown -R "$2:$2" . && chmod -R u+w out`
	if out, err := exec.Command("sh", "-c", script, "sh", dir, uid).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	st.state = stateOpen
}

func bestOf(n int, f func()) time.Duration {
	best := time.Duration(1<<63 - 1)
	for i := 0; i < n; i++ {
		start := time.Now()
		f()
		best = min(best, time.Since(start))
	}
	return best
}

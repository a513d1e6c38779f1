package storefs

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Benchmarks (go test -run NONE -bench . ./monitor/storefs): Seal of one
// 256 MiB file, reported against sha256sum of the same file, and of a
// 20,000-file tree; each with and without Copy. Between iterations the
// sealed tree is handed back to the writer (untimed).

func BenchmarkSealLargeFile(b *testing.B) {
	const size = 256 << 20
	for _, copyMode := range []bool{false, true} {
		b.Run(fmt.Sprintf("copy=%v", copyMode), func(b *testing.B) {
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
				if _, err := st.Seal(SealOptions{WriterUID: writerUID, Copy: copyMode}); err != nil {
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

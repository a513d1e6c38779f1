package storedb

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"privnix/nix/storepath"
)

// fill registers n paths (batches of 500, each path referring to root and the
// previous one) and returns them.
func fill(b *testing.B, db *DB, n int) []storepath.Path {
	b.Helper()
	root := mkPath(b, "root")
	mustRegister(b, db, []PathInfo{mkInfo(root)}, nil)
	ps := make([]storepath.Path, n)
	for start := 0; start < n; start += 500 {
		var batch []PathInfo
		for i := start; i < min(n, start+500); i++ {
			ps[i] = mkPath(b, fmt.Sprintf("fill-%d", i))
			refs := []storepath.Path{root}
			if i > 0 {
				refs = append(refs, ps[i-1])
			}
			batch = append(batch, mkInfo(ps[i], refs...))
		}
		mustRegister(b, db, batch, nil)
	}
	return ps
}

func BenchmarkIsValid(b *testing.B) {
	db := newTestDB(b)
	ps := fill(b, db, 10000)
	i := 0
	for b.Loop() {
		if ok, err := db.IsValid(ps[i%len(ps)]); !ok || err != nil {
			b.Fatal(ok, err)
		}
		i++
	}
}

func BenchmarkPathInfo(b *testing.B) {
	db := newTestDB(b)
	ps := fill(b, db, 10000)
	i := 0
	for b.Loop() {
		if _, ok, err := db.PathInfo(ps[i%len(ps)]); !ok || err != nil {
			b.Fatal(ok, err)
		}
		i++
	}
}

// BenchmarkRegisterValid registers one path per call (each its own durable
// transaction) from 1 or 16 goroutines; concurrent commits share fsyncs.
func BenchmarkRegisterValid(b *testing.B) {
	for _, g := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			db := newTestDB(b)
			root := mkPath(b, "root")
			mustRegister(b, db, []PathInfo{mkInfo(root)}, nil)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range g {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						p := mkPath(b, "reg-"+strconv.FormatInt(i, 10))
						if err := db.RegisterValid([]PathInfo{mkInfo(p, root)}, nil); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
		})
	}
}

// BenchmarkIdleRSS reports the process's resident set after registering 10,000
// paths, collecting garbage and idling for two seconds (run with -benchtime=1x).
func BenchmarkIdleRSS(b *testing.B) {
	db := newTestDB(b)
	fill(b, db, 10000)
	for b.Loop() {
		debug.FreeOSMemory()
		time.Sleep(2 * time.Second)
	}
	b.ReportMetric(float64(rssKiB(b))/1024, "MiB-RSS")
}

func rssKiB(b *testing.B) int {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range bytes.Lines(status) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kib, err := strconv.Atoi(string(bytes.Fields(v)[0]))
			if err != nil {
				b.Fatal(err)
			}
			return kib
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

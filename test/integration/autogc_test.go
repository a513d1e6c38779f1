package integration

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"privnix/internal/testenv"
)

// autoGCScenario adds 24 files of 1 MiB, one connection each, to a store on
// a 16 MiB tmpfs whose nix.conf asks for min-free 6 MiB and max-free 10 MiB:
// without automatic collection the store fills up. It returns how many adds
// succeeded, how many of the added paths are still valid, whether the last
// one is, and the lowest space seen available after an add.
func autoGCScenario(t *testing.T, s *testenv.Store, in string) (ok, valid int, lastValid bool, low uint64) {
	t.Helper()
	var paths []string
	low = ^uint64(0)
	for i := range 24 {
		r := s.Run(t, testenv.Alice, nil, "nix-store", "--add", filepath.Join(in, fmt.Sprintf("f%02d", i)))
		if r.Err != nil {
			t.Logf("add %d: %v %s", i, r.Err, r.Stderr)
			continue
		}
		ok++
		paths = append(paths, strings.TrimSpace(r.Stdout))
		var st syscall.Statfs_t
		if err := syscall.Statfs(s.StoreDir, &st); err != nil {
			t.Fatal(err)
		}
		low = min(low, st.Bavail*uint64(st.Frsize))
	}
	for i, p := range paths {
		r := s.Run(t, testenv.Alice, nil, "nix-store", "--check-validity", p)
		if r.Err == nil {
			valid++
			lastValid = i == len(paths)-1
		}
	}
	return ok, valid, lastValid, low
}

// mountTmpfs puts a fresh tmpfs of size bytes on dir for the test.
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// min-free/max-free: an add that finds less than min-free available first
// collects dead paths until max-free is available (nix-daemon 2.8 does the
// same on the same store, which the test also checks), so 24 MiB of adds fit
// in a 16 MiB store, the newest path stays, and the space never runs out.
func TestAutoGCMinFree(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	const mib = 1 << 20
	s := testenv.NewStore(t, storeConf+fmt.Sprintf("min-free = %d\nmax-free = %d\nmin-free-check-interval = 0\n", 6*mib, 10*mib))
	in := filepath.Join(s.Root, "in")
	os.MkdirAll(in, 0o755)
	for i := range 24 {
		data := make([]byte, mib)
		for j := 0; j < len(data); j += 32 {
			sum := sha256.Sum256([]byte(fmt.Sprint(i, j)))
			copy(data[j:], sum[:])
		}
		if err := os.WriteFile(filepath.Join(in, fmt.Sprintf("f%02d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, daemon := range []string{"nix-daemon", "privnixd"} {
		t.Run(daemon, func(t *testing.T) {
			s.Reset(t)
			mountTmpfs(t, s.StoreDir, 16*mib)
			var d *testenv.Daemon
			if daemon == "nix-daemon" {
				d = testenv.StartNixDaemon(t, s)
			} else {
				d = testenv.StartPrivnixd(t, s)
			}
			ok, valid, lastValid, low := autoGCScenario(t, s, in)
			d.Stop(t)
			t.Logf("%s: %d adds, %d still valid, lowest available %d KiB", daemon, ok, valid, low/1024)
			if ok != 24 || valid >= 24 || valid == 0 || !lastValid || low < 4*mib {
				t.Errorf("%s: %d of 24 adds succeeded, %d still valid (last one valid: %v), lowest available %d bytes", daemon, ok, valid, lastValid, low)
			}
			if daemon == "privnixd" && !strings.Contains(d.Log.String(), "running auto-GC") {
				t.Errorf("privnixd's log does not say it collected:\n%s", d.Log.String())
			}
		})
	}
}

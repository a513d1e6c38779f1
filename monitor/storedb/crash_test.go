package storedb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"privnix/nix/storepath"
)

// Environment of the crash child: the test binary re-exec'd by TestCrashConsistency.
const (
	crashDirEnv   = "PRIVNIX_STOREDB_CRASH_DIR"
	crashRoundEnv = "PRIVNIX_STOREDB_CRASH_ROUND"
	crashOpenEnv  = "PRIVNIX_STOREDB_CRASH_REOPEN" // set: the child reopens the database in a loop (reopenChild)
	crashMemTable = 1 << 20                        // small, so that big batches split into several transactions
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
		child := crashChild
		if os.Getenv(crashOpenEnv) != "" {
			child = reopenChild
		}
		if err := child(dir, round); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild registers and deletes paths until it is killed. On stdout it
// writes "+<base>" after a registration of <base> returned and "-<base>"
// before it asks to delete <base>.
func crashChild(dir string, round int) error {
	db, err := Open(dir, Options{MemTableSize: crashMemTable})
	if err != nil {
		return err
	}
	valid, err := db.AllValid()
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(uint64(round), uint64(time.Now().UnixNano())))
	for i := 0; ; i++ {
		batch := crashBatch(rng, round, i, valid)
		ps := make([]storepath.Path, len(batch))
		for j := range batch {
			ps[j] = batch[j].Path
		}
		if err := db.MarkPending(ps...); err != nil {
			return err
		}
		outs := map[storepath.Path]map[string]storepath.Path{batch[0].Path: {"out": batch[len(batch)-1].Path}}
		if err := db.RegisterValid(batch, outs); err != nil {
			return err
		}
		for _, p := range ps {
			fmt.Fprintf(out, "+%s\n", p.Base())
		}
		valid = append(valid, ps...)
		if i%5 == 4 {
			victim := valid[rng.IntN(len(valid))]
			fmt.Fprintf(out, "-%s\n", victim.Base())
			out.Flush()
			if err := db.Delete(victim); err != nil && !errors.Is(err, ErrLiveReferrer) {
				return err
			}
			if ok, _ := db.IsValid(victim); !ok {
				valid = removePath(valid, victim)
			}
		}
		out.Flush()
	}
}

// crashBatch makes a batch whose paths refer to each other and to earlier
// valid paths; every 10th batch is 1,500 paths, which splits.
func crashBatch(rng *rand.Rand, round, i int, valid []storepath.Path) []PathInfo {
	n := 1 + rng.IntN(4)
	if i%10 == 9 {
		n = 1500
	}
	batch := make([]PathInfo, n)
	for j := range batch {
		p := mustBase(fmt.Sprintf("r%d-b%d-%d", round, i, j))
		var refs []storepath.Path
		if j > 0 {
			refs = append(refs, batch[j-1].Path)
		}
		if len(valid) > 0 {
			refs = append(refs, valid[rng.IntN(len(valid))])
		}
		if j%3 == 0 {
			refs = append(refs, p)
		}
		batch[j] = mkInfo(p, refs...)
	}
	return batch
}

func mustBase(name string) storepath.Path { return mkPath(panicTB{}, name) }

// panicTB lets mkPath run outside a test, in the crash child.
type panicTB struct{ testing.TB }

func (panicTB) Helper() {}
func (panicTB) Fatalf(f string, args ...any) {
	panic(fmt.Sprintf(f, args...))
}

func removePath(ps []storepath.Path, p storepath.Path) []storepath.Path {
	for i, q := range ps {
		if q == p {
			return append(ps[:i], ps[i+1:]...)
		}
	}
	return ps
}

// TestCrashConsistency SIGKILLs a registering child at random moments, 20
// times, and checks after each that the database is consistent (Check: no
// dangling index entry, the valid set closed under references) and that every
// registration the child saw return is still there.
func TestCrashConsistency(t *testing.T) {
	registered := killRounds(t, 20, 20*time.Millisecond, 300*time.Millisecond)
	t.Logf("%d registrations survived 20 kills", len(registered))
	if len(registered) < 20 {
		t.Fatalf("only %d registrations survived 20 rounds; the child barely ran", len(registered))
	}
}

// killRounds runs a crash child (env chooses which) rounds times on one
// database, killing it after a random delay in [min, min+spread), and checks
// after each kill (checkAfterCrash). It returns the paths the children
// reported registered ("+<base>") and never offered for deletion ("-<base>").
func killRounds(t *testing.T, rounds int, min, spread time.Duration, env ...string) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for round := range rounds {
		after := min + time.Duration(rand.Int64N(int64(spread)))
		for _, l := range runCrashChild(t, exe, dir, round, after, env...) {
			switch {
			case strings.HasPrefix(l, "+"):
				registered[l[1:]] = true
			case strings.HasPrefix(l, "-"):
				delete(registered, l[1:])
			default:
				t.Fatalf("round %d: the child wrote %q", round, l)
			}
		}
		checkAfterCrash(t, dir, round, registered)
	}
	return registered
}

func runCrashChild(t *testing.T, exe, dir string, round int, after time.Duration, env ...string) []string {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(round))
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(after, func() { cmd.Process.Signal(syscall.SIGKILL) })
	// Only whole lines count: the kill may cut the last one short, and a
	// truncated "+<base>" is not a registration the child reported.
	out, _ := io.ReadAll(stdout)
	lines := strings.Split(string(out), "\n")
	lines = lines[:len(lines)-1] // after the last newline: empty, or cut short
	timer.Stop()
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: child ended with %v, not by SIGKILL", round, err)
	}
	return lines
}

func checkAfterCrash(t *testing.T, dir string, round int, registered map[string]bool) {
	t.Helper()
	db, err := Open(dir, Options{MemTableSize: crashMemTable})
	if err != nil {
		t.Fatalf("round %d: reopen: %v", round, err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	for base := range registered {
		p, err := storepath.ParseBase(base)
		if err != nil {
			t.Fatalf("round %d: the child reported %q, not a store path: %v", round, base, err)
		}
		if ok, err := db.IsValid(p); !ok || err != nil {
			t.Fatalf("round %d: %s was registered before the crash and is lost (err %v)", round, base, err)
		}
	}
	pend, err := db.Pending()
	if err != nil {
		t.Fatal(err)
	}
	valid, err := db.ValidAmong(pend)
	if err != nil || len(valid) != 0 {
		t.Fatalf("round %d: pending paths also valid: %v (err %v)", round, bases(valid), err)
	}
	if err := db.ClearPending(pend...); err != nil {
		t.Fatal(err)
	}
}

// reopenChild opens the database, registers one path, reports it and closes,
// again and again until it is killed: what a privnixd that is killed or
// crashes while starting does to its state directory. Every badger.Open
// creates a new value-log file and a memtable WAL, so kills land in the middle
// of that.
func reopenChild(dir string, round int) error {
	for i := 0; ; i++ {
		db, err := Open(dir, Options{MemTableSize: crashMemTable})
		if err != nil {
			return err
		}
		p := mustBase(fmt.Sprintf("o%d-%d", round, i))
		if err := db.RegisterValid([]PathInfo{mkInfo(p)}, nil); err != nil {
			return err
		}
		fmt.Printf("+%s\n", p.Base())
		if err := db.Close(); err != nil {
			return err
		}
	}
}

// TestCrashDuringOpen SIGKILLs a child that keeps reopening the database
// (reopenChild) at random moments, 40 times, and after each opens it as
// privnixd does at start-up: the open must succeed, the database pass Check,
// and every registration the child reported must still be there. A kill
// between Badger creating a log file and sizing it used to leave a directory
// no later Open accepted (see removeEmptyLogs).
func TestCrashDuringOpen(t *testing.T) {
	registered := killRounds(t, 40, 5*time.Millisecond, 60*time.Millisecond, crashOpenEnv+"=1")
	t.Logf("%d registrations survived 40 kills", len(registered))
}

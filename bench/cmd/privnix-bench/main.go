// Command privnix-bench runs the same workloads against a fresh nix-daemon
// 2.8 and a fresh privnixd on private stores, as an unprivileged client with
// the real Nix client, and reports wall time, the ratio privnix/nix-daemon,
// each daemon's CPU time (its whole process tree, through a cgroup) and RSS.
// `make bench` runs it (scripts/bench.sh); it must run as root.
//
// Environment: BENCH_REPEAT (repetitions, default 5), BENCH_LOAD_SECONDS
// (load generator duration, default 3), BENCH_ONLY (comma-separated group or
// workload ids), PROFILE=1 (CPU profiles of privnixd for the slowest workload),
// BENCH_PRIVNIXD_ENV (extra environment for privnixd, for experiments).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	nd = "nix-daemon"
	pd = "privnix"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "load" {
		loadMain(os.Args[2:])
		return
	}
	binDir := flag.String("bin-dir", "bin", "directory with privnixd and its children")
	outDir := flag.String("out", "bench/out", "results directory")
	workDir := flag.String("work-dir", "/var/tmp", "where the private stores and inputs are made (and removed)")
	flag.Parse()
	cfg := config{
		BinDir:  must(filepath.Abs(*binDir)),
		OutDir:  must(filepath.Abs(*outDir)),
		Repeat:  envInt("BENCH_REPEAT", 5),
		LoadDur: time.Duration(envFloat("BENCH_LOAD_SECONDS", 3) * float64(time.Second)),
		Only:    splitList(os.Getenv("BENCH_ONLY")),
		Profile: os.Getenv("PROFILE") == "1",
		WorkDir: *workDir,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "privnix-bench: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	BinDir, OutDir string
	WorkDir        string
	Repeat         int
	LoadDur        time.Duration
	Only           []string
	Profile        bool
}

func run(ctx context.Context, cfg config) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root: it starts the daemons and runs clients as %s", clientUser)
	}
	for _, p := range []string{"nix-daemon", "nix-store", "nix-build", "nix-instantiate", "nix", "sha256sum"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s not found (run scripts/setup-test-host.sh)", p)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.BinDir, "privnixd")); err != nil {
		return fmt.Errorf("privnixd not in %s: run make build", cfg.BinDir)
	}
	cred, err := lookupCred(clientUser)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(cfg.WorkDir, "privnix-bench-")
	if err != nil {
		return err
	}
	os.Chmod(work, 0o755)
	defer os.RemoveAll(work)
	// The load generator is this program run as the client user: copy it
	// where that user can execute it.
	self := filepath.Join(work, "privnix-bench")
	if err := copyFile(must(os.Executable()), self, 0o755); err != nil {
		return err
	}
	cgRoot := ""
	if m := findCgroup2(); m != "" {
		if cgRoot, err = os.MkdirTemp(m, "privnix-bench-"); err != nil {
			logf("no cgroup for the daemons (%v): CPU time is not measured", err)
			cgRoot = ""
		} else {
			defer syscall.Rmdir(cgRoot)
		}
	} else {
		logf("no cgroup2 mount: CPU time is not measured")
	}
	t0 := time.Now()
	logf("making inputs in %s", work)
	in, err := makeInputs(filepath.Join(work, "inputs"))
	if err != nil {
		return err
	}
	rep := &Report{
		Started:    time.Now().UTC().Format(time.RFC3339),
		Host:       hostInfo(),
		NixVersion: strings.TrimSpace(string(must(exec.Command("nix-daemon", "--version").Output()))),
		Repeat:     cfg.Repeat,
		LoadSecs:   cfg.LoadDur.Seconds(),
		NixConf:    nixConf,
	}
	if out, err := exec.Command(filepath.Join(cfg.BinDir, "privnixd"), "--version").Output(); err == nil {
		rep.PrivnixVersion = strings.TrimSpace(string(out))
	}
	r := &runner{cfg: cfg, work: work, cgRoot: cgRoot, cred: cred}
	for _, g := range groups(in, self, cfg.LoadDur) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ws := selected(g, cfg.Only)
		if len(ws) == 0 {
			continue
		}
		res, err := r.runGroup(ctx, g, ws, nil)
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, res...)
	}
	rep.Seconds = time.Since(t0).Seconds()
	rep.finish()
	if cfg.Profile {
		rep.Profile = r.profile(ctx, in, self, rep)
	}
	if err := rep.write(cfg.OutDir); err != nil {
		return err
	}
	rep.printTable(os.Stdout)
	fmt.Printf("\nresults: %s/results.md, results.json, ratios.png (%.0f s)\n", cfg.OutDir, rep.Seconds)
	return nil
}

func selected(g *Group, only []string) []*Workload {
	if len(only) == 0 || slices.Contains(only, g.Name) {
		return g.Workloads
	}
	var ws []*Workload
	for _, w := range g.Workloads {
		if slices.Contains(only, w.ID) {
			ws = append(ws, w)
		}
	}
	return ws
}

type runner struct {
	cfg    config
	work   string
	cgRoot string
	cred   *syscall.Credential
}

// runGroup starts a fresh nix-daemon and privnixd on fresh stores, runs the
// group's setup on each, then the workloads, alternating the daemons from one
// repetition to the next. pdArgs are extra privnixd arguments; with
// pdOnly-style use (profiles) the caller passes pdArgs and ignores nix-daemon.
func (r *runner) runGroup(ctx context.Context, g *Group, ws []*Workload, pdArgs []string) ([]*Result, error) {
	if g.BuildUsers {
		unlock, err := lockBuildUsers()
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	logf("group %s: starting fresh daemons", g.Name)
	targets := []*Target{{Name: nd}, {Name: pd}}
	for _, t := range targets {
		s, err := newStore(r.work, t.Name, r.cred)
		if err != nil {
			return nil, err
		}
		t.store = s
		defer s.remove()
		path, args := "nix-daemon", []string(nil)
		if t.Name == pd {
			path = filepath.Join(r.cfg.BinDir, "privnixd")
			args = append([]string{"--bin-dir", r.cfg.BinDir}, pdArgs...)
		}
		d, err := startDaemon(t.Name, path, args, s, r.cgRoot)
		if err != nil {
			t.err = err
			continue
		}
		t.d = d
		defer d.Stop()
		if g.Setup != nil {
			st := time.Now()
			if err := g.Setup(ctx, t); err != nil {
				t.err = fmt.Errorf("setup: %v", err)
				logf("  %s: %v", t.Name, t.err)
			} else {
				logf("  %s: setup %.2f s", t.Name, time.Since(st).Seconds())
			}
		}
	}
	var results []*Result
	for _, w := range ws {
		res := &Result{ID: w.ID, Title: w.Title, Kind: w.Kind, Group: g.Name}
		sides := map[string]*Side{nd: &res.ND, pd: &res.PD}
		for _, t := range targets {
			side := sides[t.Name]
			if t.err != nil {
				side.Err = t.err.Error()
			} else {
				side.IdleRSS = procStatusKB(t.d.PID(), "VmRSS") * 1024
				side.IdleTreePSS = t.d.TreePSS()
			}
		}
		reps := r.cfg.Repeat
		if w.Reps > 0 {
			reps = w.Reps
		}
		if w.MaxReps > 0 {
			reps = min(reps, w.MaxReps)
		}
		for rep := range reps {
			order := targets
			if rep%2 == 1 {
				order = []*Target{targets[1], targets[0]}
			}
			for _, t := range order {
				side := sides[t.Name]
				if side.Err != "" || ctx.Err() != nil {
					continue
				}
				if ex := t.d.Exited(); ex != "" {
					side.Err = ex
					continue
				}
				err := r.once(ctx, w, t, rep, side)
				// The build users are shared by every test on the host: a
				// daemon of another test may kill our builders (killUser).
				// Such a repetition is run again with fresh derivations.
				for try := 1; err != nil && try <= 2 && strings.Contains(err.Error(), "failed due to signal 9 (Killed)"); try++ {
					side.Warn = appendWarn(side.Warn, fmt.Sprintf("rep %d run again: a builder was killed from outside (shared build users)", rep+1))
					logf("  %-22s %-10s rep %d: a builder was killed from outside; running it again", w.ID, t.Name, rep+1)
					err = r.once(ctx, w, t, rep+100*try, side)
				}
				if err != nil {
					side.Err = err.Error()
					time.Sleep(50 * time.Millisecond)
					if ex := t.d.Exited(); ex != "" {
						side.Err += " — " + ex
					}
					logf("  %-22s %-10s rep %d: %v", w.ID, t.Name, rep+1, err)
					continue
				}
			}
		}
		for _, t := range targets {
			if t.d != nil {
				sides[t.Name].HWM = procStatusKB(t.d.PID(), "VmHWM") * 1024
			}
		}
		res.summarize()
		logf("  %-22s nix-daemon %s   privnix %s   ratio %s", w.ID, res.ND.short(w.Kind), res.PD.short(w.Kind), fmtRatio(res.Ratio))
		results = append(results, res)
	}
	// Keep the daemons' logs (for privnix's n/a: the reason is in there).
	logs := filepath.Join(r.cfg.OutDir, "logs")
	os.MkdirAll(logs, 0o755)
	for _, t := range targets {
		if t.d != nil {
			os.WriteFile(filepath.Join(logs, g.Name+"-"+t.Name+".log"), []byte(t.d.log.String()), 0o644)
		}
	}
	return results, nil
}

// once runs one repetition of w on t and records it.
func (r *runner) once(ctx context.Context, w *Workload, t *Target, rep int, side *Side) error {
	if w.Pre != nil {
		if err := w.Pre(ctx, t, rep); err != nil {
			return fmt.Errorf("preparing: %v", err)
		}
	}
	if w.Baseline != nil {
		st := time.Now()
		if err := w.Baseline(ctx); err != nil {
			return fmt.Errorf("baseline: %v", err)
		}
		side.Baseline = append(side.Baseline, time.Since(st).Seconds())
	}
	cpu0, cpuOK := t.d.CPU()
	own0 := t.d.OwnCPU()
	sampler := sampleRSS(t.d, 50*time.Millisecond)
	start := time.Now()
	var err error
	var lr LoadResult
	if w.Kind == kindLoad {
		lr, err = runLoad(ctx, filepath.Join(r.work, "privnix-bench"), t.store, t.probe, w.Load)
	} else {
		err = w.Run(ctx, t, rep)
	}
	wall := time.Since(start)
	peak := sampler.Stop()
	cpu1, _ := t.d.CPU()
	own := (t.d.OwnCPU() - own0).Seconds()
	var partial *partialError
	if errors.As(err, &partial) {
		side.Warn = appendWarn(side.Warn, fmt.Sprintf("rep %d: %v", rep+1, partial.error))
		logf("  %-22s %-10s rep %d: %v (kept)", w.ID, t.Name, rep+1, partial.error)
	} else if err != nil {
		return err
	}
	side.PeakTreePSS = max(side.PeakTreePSS, peak)
	if w.Kind == kindLoad {
		side.Load = &lr
		side.Wall = append(side.Wall, 1/lr.OpsPerS) // seconds per operation
		side.OwnCPU = append(side.OwnCPU, own/float64(lr.Ops))
		if cpuOK {
			side.CPU = append(side.CPU, (cpu1-cpu0).Seconds()/float64(lr.Ops))
		}
		return nil
	}
	side.Wall = append(side.Wall, wall.Seconds())
	side.OwnCPU = append(side.OwnCPU, own)
	if cpuOK {
		side.CPU = append(side.CPU, (cpu1 - cpu0).Seconds())
	}
	return nil
}

// profile re-runs the slowest workload (by ratio) with CPU profiling of
// privnixd when privnixd supports it, and says what it did.
func (r *runner) profile(ctx context.Context, in *Inputs, self string, rep *Report) *ProfileInfo {
	var slow *Result
	for _, res := range rep.Results {
		if res.Ratio != nil && (slow == nil || *res.Ratio > *slow.Ratio) {
			slow = res
		}
	}
	if slow == nil {
		return &ProfileInfo{Note: "no workload ran on both daemons: nothing to profile"}
	}
	p := &ProfileInfo{Workload: slow.ID}
	help, _ := exec.Command(filepath.Join(r.cfg.BinDir, "privnixd"), "--help").CombinedOutput()
	if !strings.Contains(string(help), "--cpuprofile") {
		p.Note = "privnixd has no CPU profiling flag yet: needed `privnixd --cpuprofile FILE` (the monitor: runtime/pprof from start to SIGTERM) " +
			"and `--frontend-cpuprofile-dir DIR` (the monitor opens DIR/frontend-PID.pprof and hands the fd to the frontend, " +
			"which cannot open paths once confined; the frontend profiles into it until its client leaves). " +
			"make bench passes both as soon as `privnixd --help` lists them."
		return p
	}
	prof := filepath.Join(r.cfg.OutDir, "privnixd-"+slow.ID+".cpu.pprof")
	args := []string{"--cpuprofile", prof}
	frontends := filepath.Join(r.cfg.OutDir, "frontend-"+slow.ID)
	if strings.Contains(string(help), "--frontend-cpuprofile-dir") {
		os.MkdirAll(frontends, 0o777)
		os.Chmod(frontends, 0o1777)
		args = append(args, "--frontend-cpuprofile-dir", frontends)
	}
	for _, g := range groups(in, self, r.cfg.LoadDur) {
		for _, w := range g.Workloads {
			if w.ID == slow.ID {
				logf("PROFILE=1: re-running %s with %s", w.ID, strings.Join(args, " "))
				if _, err := r.runGroup(ctx, g, []*Workload{w}, args); err != nil {
					p.Note = err.Error()
					return p
				}
				p.Files = append(p.Files, prof)
				if m, _ := filepath.Glob(filepath.Join(frontends, "*")); len(m) > 0 {
					p.Files = append(p.Files, m...)
				}
				p.Note = "go tool pprof -top " + filepath.Join(r.cfg.BinDir, "privnixd") + " " + prof
				if !strings.Contains(string(help), "--frontend-cpuprofile-dir") {
					p.Note += " (the monitor only: frontends are not profiled until privnixd has --frontend-cpuprofile-dir DIR, " +
						"the monitor opening a file per frontend and handing it the fd)"
				}
				return p
			}
		}
	}
	return p
}

func appendWarn(w, s string) string {
	if w == "" {
		return s
	}
	return w + "; " + s
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintf(os.Stderr, "privnix-bench: %v\n", err)
		os.Exit(1)
	}
	return v
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && f > 0 {
		return f
	}
	return def
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

func copyFile(from, to string, mode os.FileMode) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func hostInfo() string {
	var u syscall.Utsname
	syscall.Uname(&u)
	b := make([]byte, 0, 65)
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	cpus := "?"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus = strconv.Itoa(strings.Count(string(data), "\nprocessor") + 1)
	}
	return fmt.Sprintf("Linux %s, %s CPUs", b, cpus)
}

// buildUsersLock is the host-wide lock the integration tests take around
// builds: privnixd and nix-daemon kill every process of a build user around
// each build, so no two of them may build as the shared pnxbld users at once.
const buildUsersLock = "/tmp/privnix-test-build-users.lock"

// lockBuildUsers waits for the build-users lock and returns its release.
func lockBuildUsers() (func(), error) {
	f, err := os.OpenFile(buildUsersLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	logf("waiting for %s (builds of other tests)", buildUsersLock)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", buildUsersLock, err)
	}
	return func() { f.Close() }, nil
}

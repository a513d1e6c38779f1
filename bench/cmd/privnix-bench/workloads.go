package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Kinds of workload.
const (
	kindWall = "wall" // a command (or a fixed amount of work) timed end to end
	kindLoad = "load" // the load generator for a fixed time: throughput and latency
)

// Target is one daemon under test within a group: its store, the daemon and
// what the group's setup left for the workloads.
type Target struct {
	Name  string // "nix-daemon" or "privnix"
	store *Store
	d     *Daemon
	err   error // the group's setup failed: every workload is n/a
	probe string
	first string // queries: the chain's first and last paths
	last  string
}

// Workload is one measured thing.
type Workload struct {
	ID    string
	Title string
	Kind  string
	// Pre runs before each repetition, untimed.
	Pre func(ctx context.Context, t *Target, rep int) error
	// Run is the timed part of one repetition (kindWall).
	Run func(ctx context.Context, t *Target, rep int) error
	// Baseline, when set, is timed right before each repetition (so that
	// it sees the same machine load): sha256sum for the big add.
	Baseline func(ctx context.Context) error
	// Load is the load generator's job (kindLoad).
	Load LoadSpec
	// Reps overrides the repetition count (the load workloads run once:
	// their duration is the repetition); MaxReps caps it (builds and GC, to
	// keep make bench near 10 minutes on 2 cores).
	Reps, MaxReps int
}

// Group is workloads that share fresh daemons and one setup.
type Group struct {
	Name      string
	Setup     func(ctx context.Context, t *Target) error
	Workloads []*Workload
	// BuildUsers: the group builds, as the shared pnxbld users; it holds the
	// host's build-users lock (lockBuildUsers) while it runs.
	BuildUsers bool
}

// Inputs are the files the workloads add, shared by both daemons (readable by
// the client user), made once.
type Inputs struct {
	Dir      string
	Probe    string // a small file, added to get a valid path
	Tree     string // 2,000 files
	Big      string // 256 MiB
	ChainNix string
	BuildNix string
	GCDir    string
}

const (
	treeDirs    = 40
	treeFiles   = 50 // per directory: 2,000 files
	bigSize     = 256 << 20
	chainLen    = 1000
	gcPaths     = 2000
	nConnCalls  = 200
	buildsWide  = 300
	buildsChain = 100
)

const chainNix = `# A chain of text files, each referencing the one before (AddToStore, text method).
{ n, seed }:
let f = i: if i == 0 then builtins.toFile "c-${seed}-0" "root ${seed}"
           else builtins.toFile "c-${seed}-${toString i}" "${f (i - 1)} ${toString i}";
in { first = f 0; last = f (n - 1); }
`

const buildNix = `# Trivial derivations: n independent ones, or a chain of n.
{ n, seed, chain ? false }:
let
  mk = i: prev: derivation {
    name = "b-${seed}-${toString i}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo ${seed} ${toString i} ${prev} > $out" ];
  };
  chainOf = i: if i == 0 then mk 0 "" else mk i "${chainOf (i - 1)}";
in if chain then chainOf (n - 1) else builtins.genList (i: mk i "") n
`

func makeInputs(dir string) (*Inputs, error) {
	in := &Inputs{
		Dir:      dir,
		Probe:    filepath.Join(dir, "probe.txt"),
		Tree:     filepath.Join(dir, "tree"),
		Big:      filepath.Join(dir, "big.bin"),
		ChainNix: filepath.Join(dir, "chain.nix"),
		BuildNix: filepath.Join(dir, "build.nix"),
		GCDir:    filepath.Join(dir, "gc"),
	}
	if err := os.MkdirAll(in.GCDir, 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{in.Probe: "privnix bench probe\n", in.ChainNix: chainNix, in.BuildNix: buildNix}
	for p, text := range files {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	src := rand.NewChaCha8([32]byte{'p', 'r', 'i', 'v', 'n', 'i', 'x'})
	rng := rand.New(src)
	for d := range treeDirs {
		sub := filepath.Join(in.Tree, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, err
		}
		for f := range treeFiles {
			b := make([]byte, 512+rng.IntN(3584))
			for i := range b {
				b[i] = 'a' + byte(rng.IntN(26))
			}
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d.txt", f)), b, 0o644); err != nil {
				return nil, err
			}
		}
	}
	f, err := os.OpenFile(in.Big, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	// Random bytes cost time to make and hashing does not care: one random
	// MiB, stamped with its index each time.
	buf := make([]byte, 1<<20)
	src.Read(buf)
	for i := range bigSize / len(buf) {
		copy(buf, fmt.Sprintf("%016d", i))
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return nil, err
		}
	}
	return in, f.Close()
}

// seed makes each repetition's inputs new to the store.
func seed(t *Target, rep int) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name, "-", ""), rep)
}

// groups returns the benchmark, in the order it runs.
func groups(in *Inputs, self string, loadDur time.Duration) []*Group {
	nixStore := func(ctx context.Context, t *Target, args ...string) (string, error) {
		return t.store.Run(ctx, nil, "nix-store", args...)
	}
	addProbe := func(ctx context.Context, t *Target) error {
		out, err := nixStore(ctx, t, "--add", in.Probe)
		t.probe = strings.TrimSpace(out)
		return err
	}
	load := func(id, title string, l LoadSpec) *Workload {
		return &Workload{ID: id, Title: title, Kind: kindLoad, Load: l, Reps: 1}
	}
	// count runs the load generator for a fixed amount of work and times it.
	count := func(id, title string, l LoadSpec) *Workload {
		return &Workload{ID: id, Title: title, Kind: kindWall, Run: func(ctx context.Context, t *Target, rep int) error {
			_, err := runLoad(ctx, self, t.store, t.probe, l)
			return err
		}}
	}
	build := func(ctx context.Context, t *Target, rep, n int, chain bool) error {
		args := []string{"--no-out-link", in.BuildNix, "--arg", "n", strconv.Itoa(n), "--argstr", "seed", seed(t, rep)}
		if chain {
			args = append(args, "--arg", "chain", "true")
		}
		_, err := t.store.Run(ctx, nil, "nix-build", args...)
		return err
	}
	d := loadDur
	return []*Group{
		{Name: "connection", Setup: addProbe, Workloads: []*Workload{
			{ID: "conn-hash-200", Title: fmt.Sprintf("%d sequential `nix-store -q --hash`", nConnCalls), Kind: kindWall,
				Run: func(ctx context.Context, t *Target, rep int) error {
					for range nConnCalls {
						if _, err := nixStore(ctx, t, "-q", "--hash", t.probe); err != nil {
							return err
						}
					}
					return nil
				}},
		}},
		{Name: "handshake", Workloads: []*Workload{
			load("handshake-1", "connect, handshake, SetOptions; 1 client", LoadSpec{Op: "none", Conns: 1, NewConn: true, Duration: d}),
			load("handshake-8", "connect, handshake, SetOptions; 8 clients", LoadSpec{Op: "none", Conns: 8, NewConn: true, Duration: d}),
		}},
		{Name: "protocol", Setup: addProbe, Workloads: []*Workload{
			load("proto-valid-1", "IsValidPath, 1 connection", LoadSpec{Op: "valid", Conns: 1, Duration: d}),
			load("proto-valid-8", "IsValidPath, 8 connections", LoadSpec{Op: "valid", Conns: 8, Duration: d}),
			load("proto-valid-newconn", "IsValidPath, new connection per op", LoadSpec{Op: "valid", Conns: 1, NewConn: true, Duration: d}),
			load("proto-info-1", "QueryPathInfo, 1 connection", LoadSpec{Op: "info", Conns: 1, Duration: d}),
			load("proto-info-8", "QueryPathInfo, 8 connections", LoadSpec{Op: "info", Conns: 8, Duration: d}),
			load("proto-info-newconn", "QueryPathInfo, new connection per op", LoadSpec{Op: "info", Conns: 1, NewConn: true, Duration: d}),
		}},
		{Name: "concurrency", Setup: addProbe, Workloads: []*Workload{
			count("conc-8x100", "8 clients × 100 IsValidPath (one connection each)", LoadSpec{Op: "valid", Conns: 8, Count: 100}),
			count("conc-8x100-newconn", "8 clients × 100 IsValidPath (a connection per check)", LoadSpec{Op: "valid", Conns: 8, NewConn: true, Count: 100}),
		}},
		{Name: "adds", Workloads: []*Workload{
			{ID: "add-tree-2000", Title: "`nix-store --add` of a 2,000-file tree", Kind: kindWall,
				Pre: func(ctx context.Context, t *Target, rep int) error {
					return os.WriteFile(filepath.Join(in.Tree, "seed"), []byte(seed(t, rep)), 0o644)
				},
				Run: func(ctx context.Context, t *Target, rep int) error {
					_, err := nixStore(ctx, t, "--add", in.Tree)
					return err
				}},
			{ID: "add-file-256m", Title: "`nix-store --add` of a 256 MiB file", Kind: kindWall,
				Pre: func(ctx context.Context, t *Target, rep int) error {
					f, err := os.OpenFile(in.Big, os.O_WRONLY, 0)
					if err != nil {
						return err
					}
					defer f.Close()
					_, err = f.WriteAt([]byte(fmt.Sprintf("%-32s", seed(t, rep))), 0)
					return err
				},
				Run: func(ctx context.Context, t *Target, rep int) error {
					_, err := nixStore(ctx, t, "--add", in.Big)
					return err
				},
				Baseline: func(ctx context.Context) error {
					return exec.CommandContext(ctx, "sha256sum", in.Big).Run()
				}},
		}},
		{Name: "instantiate", Workloads: []*Workload{
			{ID: "add-text-1000", Title: "`nix-instantiate`: 1,000 text files referencing each other", Kind: kindWall,
				Run: func(ctx context.Context, t *Target, rep int) error {
					_, err := t.store.Run(ctx, nil, "nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode",
						in.ChainNix, "--arg", "n", strconv.Itoa(chainLen), "--argstr", "seed", seed(t, rep))
					return err
				}},
		}},
		{Name: "queries",
			Setup: func(ctx context.Context, t *Target) error { return addChain(ctx, t, in, chainLen, "q") },
			Workloads: []*Workload{
				{ID: "query-requisites-1000", Title: "`nix-store -q --requisites` (1,000 paths)", Kind: kindWall,
					Run: func(ctx context.Context, t *Target, rep int) error {
						return expectLines(nixStore(ctx, t, "-q", "--requisites", t.last))
					}},
				{ID: "query-referrers-1000", Title: "`nix-store -q --referrers-closure` (1,000 paths)", Kind: kindWall,
					Run: func(ctx context.Context, t *Target, rep int) error {
						return expectLines(nixStore(ctx, t, "-q", "--referrers-closure", t.first))
					}},
				{ID: "path-info-all", Title: "`nix path-info --all` (1,000 paths)", Kind: kindWall,
					Run: func(ctx context.Context, t *Target, rep int) error {
						return expectLines(t.store.Run(ctx, nil, "nix", "--extra-experimental-features", "nix-command", "path-info", "--all"))
					}},
			}},
		{Name: "builds", BuildUsers: true, Workloads: []*Workload{
			{ID: "build-300", Title: "`nix-build` of 300 independent trivial derivations", Kind: kindWall, MaxReps: 3,
				Run: func(ctx context.Context, t *Target, rep int) error { return build(ctx, t, rep, buildsWide, false) }},
			{ID: "build-chain-100", Title: "`nix-build` of a chain of 100 derivations", Kind: kindWall, MaxReps: 3,
				Run: func(ctx context.Context, t *Target, rep int) error { return build(ctx, t, rep, buildsChain, true) }},
		}},
		{Name: "gc", Workloads: []*Workload{
			{ID: "gc-2000", Title: "`nix-store --gc` of 2,000 dead paths", Kind: kindWall, MaxReps: 3,
				Pre: func(ctx context.Context, t *Target, rep int) error {
					dir := filepath.Join(in.GCDir, seed(t, rep))
					if err := os.MkdirAll(dir, 0o755); err != nil {
						return err
					}
					args := []string{"--add"}
					for i := range gcPaths {
						p := filepath.Join(dir, fmt.Sprintf("g%04d", i))
						if err := os.WriteFile(p, []byte(seed(t, rep)+" "+strconv.Itoa(i)), 0o644); err != nil {
							return err
						}
						args = append(args, p)
					}
					err := expectN(nixStore(ctx, t, args...))(gcPaths)
					os.RemoveAll(dir)
					return err
				},
				Run: func(ctx context.Context, t *Target, rep int) error {
					_, err := nixStore(ctx, t, "--gc")
					return err
				}},
		}},
		substGroup(in),
	}
}

// expectLines checks that a query printed at least the chain.
func expectLines(out string, err error) error {
	return expectN(out, err)(chainLen)
}

func expectN(out string, err error) func(int) error {
	return func(n int) error {
		if err != nil {
			return err
		}
		if got := strings.Count(out, "\n"); got < n {
			return fmt.Errorf("expected at least %d lines of output, got %d", n, got)
		}
		return nil
	}
}

// addChain adds a chain of n text files (chainNix) and records its first
// and last paths in t.
func addChain(ctx context.Context, t *Target, in *Inputs, n int, seed string) error {
	out, err := t.store.Run(ctx, nil, "nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode",
		in.ChainNix, "--arg", "n", strconv.Itoa(n), "--argstr", "seed", seed)
	if err != nil {
		return err
	}
	var v struct{ First, Last string }
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return fmt.Errorf("nix-instantiate output %q: %v", out, err)
	}
	t.first, t.last = v.First, v.Last
	return nil
}

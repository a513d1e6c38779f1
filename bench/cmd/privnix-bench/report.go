package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Side is one daemon's measurements of one workload.
type Side struct {
	// Wall is seconds per repetition (kindWall) or seconds per operation
	// (kindLoad); CPU is the daemon tree's CPU seconds on the same basis.
	Wall   []float64 `json:"wall_s,omitempty"`
	CPU    []float64 `json:"cpu_s,omitempty"`
	Median float64   `json:"median_s,omitempty"`
	Min    float64   `json:"min_s,omitempty"`
	Max    float64   `json:"max_s,omitempty"`
	CPUMed float64   `json:"cpu_median_s,omitempty"`
	// OwnCPU is the daemon process's own share of CPU (privnixd: the
	// monitor; the rest is its frontends and storeprocs), same basis.
	OwnCPU    []float64   `json:"own_cpu_s,omitempty"`
	OwnCPUMed float64     `json:"own_cpu_median_s,omitempty"`
	Load      *LoadResult `json:"load,omitempty"`
	// Memory in bytes: the daemon's own VmRSS when the workload started
	// (idle), the whole tree's PSS at that moment, the tree's peak PSS
	// sampled every 50 ms while it ran, and the daemon process's VmHWM at
	// the end.
	IdleRSS     int64  `json:"idle_rss,omitempty"`
	IdleTreePSS int64  `json:"idle_tree_pss,omitempty"`
	PeakTreePSS int64  `json:"peak_tree_pss,omitempty"`
	HWM         int64  `json:"daemon_vmhwm,omitempty"`
	Err         string `json:"error,omitempty"`
	Warn        string `json:"warning,omitempty"` // kept despite a few failed operations
	// Baseline is sha256sum's time on the same file right before each
	// repetition (add-file-256m).
	Baseline []float64 `json:"sha256sum_s,omitempty"`
}

// Result is one workload on both daemons.
type Result struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Group    string   `json:"group"`
	Kind     string   `json:"kind"`
	ND       Side     `json:"nix_daemon"`
	PD       Side     `json:"privnix"`
	Ratio    *float64 `json:"ratio,omitempty"`     // privnix / nix-daemon, wall (or time per op)
	CPURatio *float64 `json:"cpu_ratio,omitempty"` // privnix / nix-daemon, CPU
}

// ProfileInfo says what PROFILE=1 did.
type ProfileInfo struct {
	Workload string   `json:"workload,omitempty"`
	Files    []string `json:"files,omitempty"`
	Note     string   `json:"note"`
}

// Report is the whole run.
type Report struct {
	Started        string       `json:"started"`
	Seconds        float64      `json:"seconds"`
	Host           string       `json:"host"`
	NixVersion     string       `json:"nix_daemon_version"`
	PrivnixVersion string       `json:"privnixd_version"`
	Repeat         int          `json:"repeat"`
	LoadSecs       float64      `json:"load_seconds"`
	NixConf        string       `json:"nix_conf"`
	Sha256sum      float64      `json:"sha256sum_256mib_s"` // median over both daemons' repetitions
	AddFraction    *float64     `json:"privnix_add_256mib_vs_sha256sum,omitempty"`
	NDAddFraction  *float64     `json:"nix_daemon_add_256mib_vs_sha256sum,omitempty"`
	Results        []*Result    `json:"results"`
	Profile        *ProfileInfo `json:"profile,omitempty"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (s *Side) summarize() {
	if len(s.Wall) == 0 {
		return
	}
	s.Median, s.Min, s.Max = median(s.Wall), slices.Min(s.Wall), slices.Max(s.Wall)
	s.CPUMed = median(s.CPU)
	s.OwnCPUMed = median(s.OwnCPU)
}

func (r *Result) summarize() {
	r.ND.summarize()
	r.PD.summarize()
	if r.ND.Err == "" && r.PD.Err == "" && r.ND.Median > 0 && r.PD.Median > 0 {
		x := r.PD.Median / r.ND.Median
		r.Ratio = &x
		if r.ND.CPUMed > 0 && r.PD.CPUMed > 0 {
			c := r.PD.CPUMed / r.ND.CPUMed
			r.CPURatio = &c
		}
	}
}

func (rep *Report) finish() {
	for _, r := range rep.Results {
		if r.ID != "add-file-256m" {
			continue
		}
		rep.Sha256sum = median(append(slices.Clone(r.ND.Baseline), r.PD.Baseline...))
		// One baseline for both (the median over every repetition): a
		// per-daemon one would move with the machine's noise.
		if rep.Sha256sum <= 0 {
			continue
		}
		if r.PD.Median > 0 && r.PD.Err == "" {
			f := rep.Sha256sum / r.PD.Median
			rep.AddFraction = &f
		}
		if r.ND.Median > 0 && r.ND.Err == "" {
			f := rep.Sha256sum / r.ND.Median
			rep.NDAddFraction = &f
		}
	}
}

// short is a one-line summary for the progress log.
func (s *Side) short(kind string) string {
	if s.Err != "" {
		return "n/a"
	}
	if kind == kindLoad && s.Load != nil {
		return fmt.Sprintf("%.0f ops/s", s.Load.OpsPerS)
	}
	return fmtDur(s.Median)
}

func fmtDur(sec float64) string {
	switch {
	case sec == 0:
		return "-"
	case sec < 1e-3:
		return fmt.Sprintf("%.0f µs", sec*1e6)
	case sec < 1:
		return fmt.Sprintf("%.1f ms", sec*1e3)
	default:
		return fmt.Sprintf("%.2f s", sec)
	}
}

func fmtRatio(r *float64) string {
	if r == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", *r)
}

func fmtMiB(b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}

func (s *Side) cell(kind string) string {
	if s.Err != "" {
		if len(s.Wall) > 0 {
			return fmt.Sprintf("n/a (failed after %d ok, median %s)", len(s.Wall), fmtDur(median(s.Wall)))
		}
		return "n/a"
	}
	if s.Warn != "" {
		return s.cellOK(kind) + " !"
	}
	return s.cellOK(kind)
}

func (s *Side) cellOK(kind string) string {
	if len(s.Wall) == 0 {
		return "-"
	}
	if kind == kindLoad {
		return fmt.Sprintf("%s/op", fmtDur(s.Median))
	}
	return fmt.Sprintf("%s (%s–%s)", fmtDur(s.Median), fmtDur(s.Min), fmtDur(s.Max))
}

func (s *Side) cpuCell(kind string) string {
	if s.Err != "" || len(s.CPU) == 0 {
		return "-"
	}
	if kind == kindLoad {
		return fmtDur(s.CPUMed) + "/op"
	}
	return fmtDur(s.CPUMed)
}

// ownCell is the daemon process's share of the tree's CPU.
func (s *Side) ownCell() string {
	if s.Err != "" || len(s.CPU) == 0 || s.CPUMed <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f %%", min(100, s.OwnCPUMed/s.CPUMed*100))
}

// rows are the main table: one per workload.
func (rep *Report) rows() [][]string {
	rows := [][]string{{"#", "workload", "nix-daemon median (min–max)", "privnix median (min–max)", "ratio", "CPU nix-daemon", "CPU privnix", "of it privnixd itself", "CPU ratio", "peak tree PSS MiB nd / pd"}}
	for i, r := range rep.Results {
		rows = append(rows, []string{
			fmt.Sprint(i + 1), r.ID, r.ND.cell(r.Kind), r.PD.cell(r.Kind), fmtRatio(r.Ratio),
			r.ND.cpuCell(r.Kind), r.PD.cpuCell(r.Kind), r.PD.ownCell(), fmtRatio(r.CPURatio),
			fmtMiB(r.ND.PeakTreePSS) + " / " + fmtMiB(r.PD.PeakTreePSS),
		})
	}
	return rows
}

func (rep *Report) loadRows() [][]string {
	rows := [][]string{{"workload", "nix-daemon ops/s", "p50", "p99", "privnix ops/s", "p50", "p99"}}
	for _, r := range rep.Results {
		if r.Kind != kindLoad {
			continue
		}
		row := []string{r.ID}
		for _, s := range []*Side{&r.ND, &r.PD} {
			if s.Load == nil || s.Err != "" {
				row = append(row, "n/a", "", "")
				continue
			}
			row = append(row, fmt.Sprintf("%.0f", s.Load.OpsPerS), fmtDur(s.Load.P50us/1e6), fmtDur(s.Load.P99us/1e6))
		}
		rows = append(rows, row)
	}
	return rows
}

// memRows: the RSS targets (idle ≤ 100 MiB, under 8 clients ≤ 200 MiB).
func (rep *Report) memRows() [][]string {
	rows := [][]string{{"workload", "nix-daemon idle RSS", "peak tree PSS", "VmHWM", "privnixd idle RSS", "idle tree PSS", "peak tree PSS", "VmHWM"}}
	for _, r := range rep.Results {
		if !strings.HasSuffix(r.ID, "-8") && !strings.HasPrefix(r.ID, "conc-") {
			continue
		}
		rows = append(rows, []string{r.ID, fmtMiB(r.ND.IdleRSS), fmtMiB(r.ND.PeakTreePSS), fmtMiB(r.ND.HWM),
			fmtMiB(r.PD.IdleRSS), fmtMiB(r.PD.IdleTreePSS), fmtMiB(r.PD.PeakTreePSS), fmtMiB(r.PD.HWM)})
	}
	return rows
}

func (rep *Report) errors() []string {
	var out []string
	for _, r := range rep.Results {
		for _, s := range []struct {
			name string
			side *Side
		}{{nd, &r.ND}, {pd, &r.PD}} {
			if s.side.Err != "" {
				out = append(out, fmt.Sprintf("%s on %s: %s", r.ID, s.name, s.side.Err))
			} else if s.side.Warn != "" {
				out = append(out, fmt.Sprintf("%s on %s (measured, marked !): %s", r.ID, s.name, s.side.Warn))
			}
		}
	}
	return out
}

func printAligned(w io.Writer, rows [][]string) {
	if len(rows) < 2 {
		return
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, row := range rows {
		for i, c := range row {
			fmt.Fprintf(w, "%-*s  ", widths[i], c)
		}
		fmt.Fprintln(w)
	}
}

func (rep *Report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nprivnix vs %s — %s, %d repetitions (ratio = privnix / nix-daemon, lower is better)\n\n", rep.NixVersion, rep.Host, rep.Repeat)
	printAligned(w, rep.rows())
	fmt.Fprintln(w)
	printAligned(w, rep.loadRows())
	fmt.Fprintln(w)
	printAligned(w, rep.memRows())
	fmt.Fprintln(w)
	fmt.Fprintln(w, rep.shaLine())
	if errs := rep.errors(); len(errs) > 0 {
		fmt.Fprintln(w, "\nnot measured (n/a), or measured with failures (!):")
		for _, e := range errs {
			fmt.Fprintln(w, "  "+e)
		}
	}
	if rep.Profile != nil {
		fmt.Fprintf(w, "\nPROFILE: %s %s\n", rep.Profile.Workload, rep.Profile.Note)
	}
}

func (rep *Report) shaLine() string {
	if rep.Sha256sum == 0 {
		return "sha256sum: not measured (add-file-256m did not run)"
	}
	s := fmt.Sprintf("single-core sha256sum of the 256 MiB file, timed before each repetition: median %s (%.0f MiB/s)", fmtDur(rep.Sha256sum), 256/math.Max(rep.Sha256sum, 1e-9))
	if rep.NDAddFraction != nil {
		s += fmt.Sprintf("; nix-daemon --add at %.0f %% of its throughput", *rep.NDAddFraction*100)
	}
	if rep.AddFraction != nil {
		s += fmt.Sprintf("; privnix --add at %.0f %% of it (target ≥ 70 %%)", *rep.AddFraction*100)
	} else {
		s += "; privnix --add: n/a"
	}
	return s
}

func mdTable(w io.Writer, rows [][]string) {
	if len(rows) < 2 {
		fmt.Fprintf(w, "(not run)\n\n")
		return
	}
	for i, row := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		if i == 0 {
			fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(row)))
		}
	}
	fmt.Fprintln(w)
}

func (rep *Report) write(dir string) error {
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	if err := writePNG(filepath.Join(dir, "ratios.png"), rep.Results); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "results.md"))
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "# privnix vs nix-daemon (`make bench`)\n\n")
	fmt.Fprintf(f, "Run %s, %.0f s; %s; %s vs %s; %d repetitions per workload (load workloads: one run of %.0f s). "+
		"Ratio = privnix / nix-daemon median wall time (load workloads: time per operation); lower is better, target ≤ 1.0 "+
		"(builds and GC ≤ 0.67). CPU = the daemon's whole process tree (cgroup2 `cpu.stat` usage_usec), median per repetition "+
		"(load workloads: per operation); \"of it privnixd itself\" is the monitor process's own share (/proc/PID/stat, 10 ms ticks), the rest is its frontends and storeprocs. Memory: the daemon process's VmRSS at idle and its VmHWM, and the PSS summed over every process in the daemon's cgroup, sampled every 50 ms (PSS, so that shared pages count once). `logs/` has both daemons' logs per group.\n\n",
		rep.Started, rep.Seconds, rep.Host, rep.NixVersion, orDash(rep.PrivnixVersion), rep.Repeat, rep.LoadSecs)
	fmt.Fprintf(f, "![ratios](ratios.png)\n\n")
	mdTable(f, rep.rows())
	fmt.Fprintf(f, "## Protocol load (our load generator, privnix/internal/nixclient, as %s)\n\n", clientUser)
	mdTable(f, rep.loadRows())
	fmt.Fprintf(f, "## Memory (MiB; targets: privnixd idle ≤ 100, under 8 clients ≤ 200)\n\n")
	mdTable(f, rep.memRows())
	fmt.Fprintf(f, "## Adds vs sha256sum\n\n%s\n\n", rep.shaLine())
	if errs := rep.errors(); len(errs) > 0 {
		fmt.Fprintf(f, "## Not measured (n/a), or measured with failures (!)\n\n")
		for _, e := range errs {
			fmt.Fprintf(f, "- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
		fmt.Fprintln(f)
	}
	if rep.Profile != nil {
		fmt.Fprintf(f, "## Profile (PROFILE=1)\n\nSlowest workload: %s. %s\n", orDash(rep.Profile.Workload), rep.Profile.Note)
		for _, p := range rep.Profile.Files {
			fmt.Fprintf(f, "- %s\n", p)
		}
		fmt.Fprintln(f)
	}
	fmt.Fprintf(f, "## Workloads and the legend of ratios.png\n\nOne bar per workload, numbered as in the first column; the line is 1.0; green ≤ 1.0, red > 1.0, "+
		"a short grey stub = n/a.\n\n")
	for i, r := range rep.Results {
		fmt.Fprintf(f, "%d. %s: %s\n", i+1, r.ID, r.Title)
	}
	fmt.Fprintf(f, "\n## nix.conf (both daemons)\n\n```\n%s```\n", rep.NixConf)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

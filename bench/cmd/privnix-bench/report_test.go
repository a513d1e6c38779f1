package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestSummarizeRatio(t *testing.T) {
	r := &Result{ND: Side{Wall: []float64{2, 1, 3}, CPU: []float64{1, 1, 1}}, PD: Side{Wall: []float64{1, 1, 1}, CPU: []float64{2, 2, 2}}}
	r.summarize()
	if r.Ratio == nil || *r.Ratio != 0.5 || r.CPURatio == nil || *r.CPURatio != 2 {
		t.Fatalf("ratio %v, cpu ratio %v; want 0.5 and 2", r.Ratio, r.CPURatio)
	}
	if r.ND.Min != 1 || r.ND.Max != 3 {
		t.Errorf("min/max %v/%v", r.ND.Min, r.ND.Max)
	}
	// A side that failed has no ratio, and says so in its cell.
	r = &Result{ND: Side{Wall: []float64{1}}, PD: Side{Wall: []float64{1}, Err: "boom"}}
	r.summarize()
	if r.Ratio != nil {
		t.Errorf("ratio with a failed side: %v", *r.Ratio)
	}
	if c := r.PD.cell(kindWall); !strings.HasPrefix(c, "n/a") {
		t.Errorf("cell of a failed side: %q", c)
	}
}

func TestReportFiles(t *testing.T) {
	x := 1.5
	rep := &Report{Repeat: 1, Results: []*Result{
		{ID: "a", Kind: kindWall, Ratio: &x, ND: Side{Wall: []float64{1}}, PD: Side{Wall: []float64{1.5}}},
		{ID: "b", Kind: kindLoad, ND: Side{Wall: []float64{1e-5}, Load: &LoadResult{OpsPerS: 1e5}}, PD: Side{Err: "not yet implemented"}},
	}}
	rep.finish()
	dir := t.TempDir()
	if err := rep.write(dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "ratios.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() < 100 {
		t.Errorf("plot is %v", img.Bounds())
	}
	md, _ := os.ReadFile(filepath.Join(dir, "results.md"))
	if !strings.Contains(string(md), "b on privnix: not yet implemented") {
		t.Errorf("results.md does not list the n/a workload:\n%s", md)
	}
	var back Report
	j, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	if err := json.Unmarshal(j, &back); err != nil || len(back.Results) != 2 {
		t.Fatalf("results.json: %v, %d results", err, len(back.Results))
	}
	var term bytes.Buffer
	rep.printTable(&term)
	if !strings.Contains(term.String(), "1.50") {
		t.Errorf("terminal table lacks the ratio:\n%s", term.String())
	}
}

func TestCrashLine(t *testing.T) {
	log := "time=1 level=INFO msg=x\nSIGQUIT: quit\nPC=0x1\nrip 0x2\n"
	if got := crashLine(log); got != "SIGQUIT: quit" {
		t.Errorf("crashLine = %q", got)
	}
	if got := crashLine("a\nb\n"); got != "b" {
		t.Errorf("crashLine without a crash = %q", got)
	}
}

func TestOwnCPUAndStatus(t *testing.T) {
	cmd := exec.Command("true")
	p, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process = p
	d := &Daemon{cmd: cmd}
	for range 2_000_000 { // burn a little CPU so that the ticks move
		_ = strings.Repeat("x", 1)
	}
	if d.OwnCPU() < 0 {
		t.Error("negative CPU time")
	}
	if procStatusKB(os.Getpid(), "VmRSS") <= 0 {
		t.Error("no VmRSS for this process")
	}
	if procStatusKB(os.Getpid(), "NoSuchField") != 0 {
		t.Error("a missing field is not 0")
	}
}

package confine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Report is what /proc/<pid>/status says about a process's confinement.
type Report struct {
	Uid, Gid       [4]int // real, effective, saved, filesystem
	Groups         []int  // supplementary groups
	CapInh, CapPrm uint64
	CapEff, CapBnd uint64
	CapAmb         uint64
	NoNewPrivs     bool
	Seccomp        int // 0 disabled, 1 strict, 2 filter
	SeccompFilters int // number of filters stacked on the thread
}

// Status reads /proc/thread-self/status: the calling thread's view, which for
// seccomp and no_new_privs is the one that matters. Call it from a goroutine
// locked to its OS thread to be sure which thread is reported.
func Status() (Report, error) {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return Report{}, err
	}
	return ParseStatus(bytes.NewReader(b))
}

// ParseStatus parses the text of a /proc/<pid>/status file, so that the
// monitor and tests can check another process.
func ParseStatus(r io.Reader) (Report, error) {
	var rep Report
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Uid":
			err = parseIDs(val, &rep.Uid)
		case "Gid":
			err = parseIDs(val, &rep.Gid)
		case "Groups":
			for _, f := range strings.Fields(val) {
				g, e := strconv.Atoi(f)
				if e != nil {
					err = e
					break
				}
				rep.Groups = append(rep.Groups, g)
			}
		case "CapInh":
			rep.CapInh, err = strconv.ParseUint(val, 16, 64)
		case "CapPrm":
			rep.CapPrm, err = strconv.ParseUint(val, 16, 64)
		case "CapEff":
			rep.CapEff, err = strconv.ParseUint(val, 16, 64)
		case "CapBnd":
			rep.CapBnd, err = strconv.ParseUint(val, 16, 64)
		case "CapAmb":
			rep.CapAmb, err = strconv.ParseUint(val, 16, 64)
		case "NoNewPrivs":
			var n int
			n, err = strconv.Atoi(val)
			rep.NoNewPrivs = n != 0
		case "Seccomp":
			rep.Seccomp, err = strconv.Atoi(val)
		case "Seccomp_filters":
			rep.SeccompFilters, err = strconv.Atoi(val)
		default:
			continue
		}
		if err != nil {
			return Report{}, fmt.Errorf("status field %s: %w", key, err)
		}
		if seen[key] {
			return Report{}, fmt.Errorf("status field %s repeated", key)
		}
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return Report{}, err
	}
	// Seccomp_filters is optional (kernels before 5.9); a file missing any
	// other of these is not one we understand.
	for _, k := range requiredStatus {
		if !seen[k] {
			return Report{}, fmt.Errorf("status: no %s field", k)
		}
	}
	return rep, nil
}

var requiredStatus = []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"}

func parseIDs(val string, out *[4]int) error {
	f := strings.Fields(val)
	if len(f) != 4 {
		return fmt.Errorf("want 4 ids, got %q", val)
	}
	for i, s := range f {
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		out[i] = n
	}
	return nil
}

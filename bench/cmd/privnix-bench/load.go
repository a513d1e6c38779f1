package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"privnix/frontend/wire"
	"privnix/internal/nixclient"
	"privnix/internal/syncbuf"
)

// LoadSpec is one run of the load generator.
type LoadSpec struct {
	Op       string        // "valid" (IsValidPath), "info" (QueryPathInfo) or "none" (with NewConn: only the handshake and SetOptions)
	Conns    int           // concurrent clients
	NewConn  bool          // a new connection (handshake, SetOptions) per operation
	Duration time.Duration // run this long, or
	Count    int           // this many operations per client
}

func (l LoadSpec) String() string {
	s := fmt.Sprintf("%s conns=%d", l.Op, l.Conns)
	if l.NewConn {
		s += " new-conn-per-op"
	}
	return s
}

// LoadResult is what the load generator measured.
type LoadResult struct {
	Ops     int     `json:"ops"`
	Seconds float64 `json:"seconds"`
	OpsPerS float64 `json:"ops_per_s"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	Errors  int     `json:"errors"`
	Err     string  `json:"first_error,omitempty"`
}

// runLoad re-executes this program as the client user (the daemons must see
// an unprivileged, untrusted client) with the "load" subcommand.
func runLoad(ctx context.Context, self string, s *Store, path string, l LoadSpec) (LoadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+l.Duration)
	defer cancel()
	args := []string{"load", "-socket", s.Socket, "-path", path, "-op", l.Op,
		"-conns", strconv.Itoa(l.Conns), "-duration", l.Duration.String(), "-count", strconv.Itoa(l.Count)}
	if l.NewConn {
		args = append(args, "-newconn")
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + s.Home}
	cmd.Dir = s.Home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	var errb syncbuf.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return LoadResult{}, fmt.Errorf("load generator: %v: %s", err, lastLines(errb.String(), 3))
	}
	var r LoadResult
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("load generator output: %v", err)
	}
	if r.Errors > 0 {
		err := fmt.Errorf("%d of %d operations failed, first: %s", r.Errors, r.Ops+r.Errors, r.Err)
		if r.Errors*100 > r.Ops+r.Errors {
			return r, err
		}
		return r, &partialError{err}
	}
	return r, nil
}

// partialError is a load run where under 1 % of the operations failed: its
// numbers are kept, and the failures reported next to them.
type partialError struct{ error }

// loadMain is the "load" subcommand: it runs as the client user and prints a
// LoadResult as JSON.
func loadMain(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	socket := fs.String("socket", "", "daemon socket")
	path := fs.String("path", "", "store path to query")
	var l LoadSpec
	fs.StringVar(&l.Op, "op", "valid", "valid, info or none")
	fs.IntVar(&l.Conns, "conns", 1, "concurrent clients")
	fs.BoolVar(&l.NewConn, "newconn", false, "a new connection per operation")
	fs.DurationVar(&l.Duration, "duration", 3*time.Second, "how long (when -count is 0)")
	fs.IntVar(&l.Count, "count", 0, "operations per client")
	fs.Parse(args)
	r := generate(*socket, *path, l)
	json.NewEncoder(os.Stdout).Encode(r)
}

// generate runs the load in this process.
func generate(socket, path string, l LoadSpec) LoadResult {
	v := wire.V(34) // what the Nix 2.8 client speaks
	op := func(c *nixclient.Client) error {
		if l.Op == "none" { // the connection (handshake, SetOptions) is the work
			return nil
		}
		if l.Op == "info" {
			info, err := c.QueryPathInfo(path)
			if err == nil && info == nil {
				err = fmt.Errorf("%s is not valid", path)
			}
			return err
		}
		ok, err := c.IsValidPath(path)
		if err == nil && !ok {
			err = fmt.Errorf("%s is not valid", path)
		}
		return err
	}
	dial := func() (*nixclient.Client, error) {
		// The Nix client connects with a blocking socket, which waits while
		// the daemon's listen backlog is full; Go's connect is non-blocking
		// and fails with EAGAIN instead: wait the same way.
		var c *nixclient.Client
		var err error
		for wait := time.Now().Add(30 * time.Second); ; {
			c, err = nixclient.Dial(socket, v)
			if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().After(wait) {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if err := c.SetOptions(); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	var (
		mu      sync.Mutex
		lat     []time.Duration
		nerr    int
		firstEr string
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if nerr == 0 {
			firstEr = err.Error()
		}
		nerr++
	}
	start := time.Now()
	deadline := start.Add(l.Duration)
	more := func(i int) bool {
		if l.Count > 0 {
			return i < l.Count
		}
		return time.Now().Before(deadline)
	}
	for range l.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() { mu.Lock(); lat = append(lat, mine...); mu.Unlock() }()
			var c *nixclient.Client
			if !l.NewConn {
				var err error
				if c, err = dial(); err != nil {
					fail(err)
					return
				}
				defer c.Close()
			}
			for i := 0; more(i); i++ {
				t0 := time.Now()
				if l.NewConn {
					nc, err := dial()
					if err != nil {
						fail(err)
						if nerr > 1000 {
							return
						}
						continue
					}
					err = op(nc)
					nc.Close()
					if err != nil {
						fail(err)
						continue
					}
				} else {
					c.SetDeadline(time.Now().Add(30 * time.Second))
					if err := op(c); err != nil {
						fail(err)
						return // the connection's state is unknown
					}
				}
				mine = append(mine, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	slices.Sort(lat)
	r := LoadResult{Ops: len(lat), Seconds: el.Seconds(), Errors: nerr, Err: firstEr}
	if len(lat) > 0 {
		r.OpsPerS = float64(len(lat)) / el.Seconds()
		r.P50us = float64(lat[len(lat)/2].Microseconds())
		r.P99us = float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())
	}
	return r
}

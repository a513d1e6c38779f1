package gc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// ExecResolver is the default ResolveAs: it runs `<Readlink> -v -- PATH` (GNU
// coreutils readlink without -f: one level, as Nix's findRoots reads an
// indirect root) as uid, with gid GID, no supplementary groups, an empty
// environment, cwd "/", in its own process group, killed at the deadline.
// Its standard output, at most PATH_MAX bytes, is the link's target.
//
// Limits: the helper runs as the user, so the user can kill it (the root then
// protects nothing, which only harms the user) or ptrace it and make it print
// any path (which only keeps a path alive, as a link of theirs could). The
// path handed to it is the one Nix itself would read; it is re-resolved by
// name as the user, so a race by the user only changes the answer. Each call
// is one fork+exec (about a millisecond); ScanRootsDir runs up to 8 at once.
type ExecResolver struct {
	Readlink string // absolute path of readlink(1); "" = /usr/bin/readlink
	GID      uint32 // primary gid of the helper; 0 (never used) = the overflow gid 65534
}

// ErrResolveRoot: ExecResolver refuses to run the helper as root.
var ErrResolveRoot = errors.New("the resolver does not run as root")

// Resolve implements ResolveAs.
func (r ExecResolver) Resolve(uid uint32, path string, deadline time.Time) (string, error) {
	if uid == 0 {
		return "", ErrResolveRoot
	}
	bin := r.Readlink
	if bin == "" {
		bin = "/usr/bin/readlink"
	}
	gid := r.GID
	if gid == 0 {
		gid = 65534
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-v", "--", path)
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 100 * time.Millisecond
	stdout := &capped{max: 4096}
	stderr := &capped{max: 512}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", ErrTimeout
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.buf.String())
		return "", fmt.Errorf("readlink as uid %d: %v (%q)", uid, err, msg)
	}
	if stdout.over {
		return "", fmt.Errorf("readlink as uid %d: answer too long", uid)
	}
	out, ok := bytes.CutSuffix(stdout.buf.Bytes(), []byte("\n"))
	if !ok || bytes.IndexByte(out, '\n') >= 0 || bytes.IndexByte(out, 0) >= 0 {
		return "", fmt.Errorf("readlink as uid %d: malformed answer", uid)
	}
	return string(out), nil
}

// capped keeps the first max bytes written to it and notes any excess.
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - c.buf.Len()
	if len(p) > room {
		c.over = true
		if room > 0 {
			c.buf.Write(p[:room])
		}
		return len(p), nil
	}
	c.buf.Write(p)
	return len(p), nil
}

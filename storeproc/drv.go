package storeproc

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"privnix/ipc"
	"privnix/ipc/msg"
	"privnix/nix/drv"
	"privnix/nix/drv/aterm"
)

// DrvJob is a derivation-parsing worker's first job: the monitor's ParseDrv
// and the pipe it writes the .drv bytes to. Later jobs arrive the same way
// until the monitor closes the channel.
type DrvJob struct {
	msg.ParseDrv
	Data *os.File
}

// AwaitAny says Hello and receives the first job: an upload (StoreJob) or a
// derivation to parse (ParseDrv). Exactly one of the results is set.
func AwaitAny(mon *ipc.Conn) (*Job, *DrvJob, error) {
	if err := mon.Send(&msg.Hello{}); err != nil {
		return nil, nil, err
	}
	m, fds, err := mon.Recv()
	if err != nil {
		return nil, nil, err
	}
	switch j := m.(type) {
	case *msg.StoreJob:
		if len(fds) == 2 {
			job := &Job{StoreJob: *j, Dir: fds[0], Data: fds[1]}
			if err := job.check(); err != nil {
				job.Close()
				return nil, nil, err
			}
			return job, nil, nil
		}
	case *msg.ParseDrv:
		if dj, err := drvJob(j, fds); err == nil {
			return nil, dj, nil
		} else {
			return nil, nil, err
		}
	}
	for _, f := range fds {
		f.Close()
	}
	return nil, nil, fmt.Errorf("monitor answered Hello with %v and %d fds", m.Kind(), len(fds))
}

func drvJob(j *msg.ParseDrv, fds []*os.File) (*DrvJob, error) {
	if len(fds) != 1 {
		for _, f := range fds {
			f.Close()
		}
		return nil, fmt.Errorf("ParseDrv with %d fds", len(fds))
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(fds[0].Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		fds[0].Close()
		return nil, fmt.Errorf("ParseDrv data fd is not a pipe")
	}
	return &DrvJob{ParseDrv: *j, Data: fds[0]}, nil
}

// ServeDrvs parses first, then every further ParseDrv the monitor sends,
// until it closes the channel. Each answer is the derivation in Drv parts,
// or an Error (ClassPolicy) saying why the file is not a derivation.
func ServeDrvs(mon *ipc.Conn, first *DrvJob, log *slog.Logger) error {
	j := first
	for {
		parts := ParseDrvJob(j)
		j.Data.Close()
		for _, p := range parts {
			if err := mon.Send(p); err != nil {
				return err
			}
		}
		m, fds, err := mon.Recv()
		if err != nil {
			return nil // the monitor is done with us
		}
		pd, ok := m.(*msg.ParseDrv)
		if !ok {
			for _, f := range fds {
				f.Close()
			}
			return fmt.Errorf("monitor sent %v", m.Kind())
		}
		if j, err = drvJob(pd, fds); err != nil {
			return err
		}
	}
}

// ParseDrvJob reads the job's bytes and parses them; the answer is the Drv
// parts or one Error.
func ParseDrvJob(j *DrvJob) []msg.Message {
	b, err := io.ReadAll(io.LimitReader(j.Data, int64(j.MaxSize)+1))
	if err != nil {
		return []msg.Message{msg.Errorf(msg.ClassInternal, "reading the derivation: %v", err)}
	}
	if uint64(len(b)) > j.MaxSize {
		return []msg.Message{msg.Errorf(msg.ClassPolicy, "the derivation is larger than %d bytes", j.MaxSize)}
	}
	d, err := aterm.ParseLimits(b, aterm.Limits{MaxSize: int(j.MaxSize), MaxItems: 1 << 20})
	if err != nil {
		return []msg.Message{msg.Errorf(msg.ClassPolicy, "%v", err)}
	}
	return DrvParts(d)
}

// partBudget is the bytes of strings one Drv part carries at most, well
// below a frame.
const partBudget = 96 << 10

// DrvParts splits d into Drv messages that each fit a frame.
func DrvParts(d *drv.Derivation) []msg.Message {
	var parts []msg.Message
	cur := &msg.Drv{Platform: d.Platform, Builder: d.Builder}
	size := len(d.Platform) + len(d.Builder)
	flush := func() {
		cur.More = true
		parts = append(parts, cur)
		cur = &msg.Drv{}
		size = 0
	}
	room := func(n int) {
		if size+n+16 > partBudget && size > 0 {
			flush()
		}
		size += n + 16
	}
	for _, o := range d.Outputs {
		room(len(o.Name) + len(o.Path) + len(o.HashAlgo) + len(o.Hash))
		cur.Outputs = append(cur.Outputs, msg.DrvOutput{Name: o.Name, Path: o.Path, HashAlgo: o.HashAlgo, Hash: o.Hash})
	}
	for _, in := range d.InputDrvs {
		n := len(in.Path)
		for _, o := range in.Outputs {
			n += len(o) + 4
		}
		room(n)
		cur.InputDrvs = append(cur.InputDrvs, msg.DrvInput{Path: in.Path, Outputs: in.Outputs})
	}
	for _, s := range d.InputSrcs {
		room(len(s))
		cur.InputSrcs = append(cur.InputSrcs, s)
	}
	for _, a := range d.Args {
		room(len(a))
		cur.Args = append(cur.Args, a)
	}
	for _, e := range d.Env {
		v := e.Value
		for first := true; first || v != ""; first = false {
			chunk := v
			if len(chunk) > msg.MaxDrvString-len(e.Key) {
				chunk = v[:msg.MaxDrvString-len(e.Key)]
			}
			v = v[len(chunk):]
			room(len(e.Key) + len(chunk))
			cur.Env = append(cur.Env, msg.KV{Key: e.Key, Value: chunk})
		}
	}
	parts = append(parts, cur)
	return parts
}

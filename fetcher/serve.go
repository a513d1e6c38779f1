package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"privnix/ipc"
	"privnix/ipc/msg"
	"privnix/nix/storepath"
)

// AwaitJob sends Hello and reads the FetchJob.
func AwaitJob(mon *ipc.Conn) (*msg.FetchJob, error) {
	if err := mon.Send(&msg.Hello{}); err != nil {
		return nil, err
	}
	m, fds, err := mon.Recv()
	for _, f := range fds {
		f.Close()
	}
	if err != nil {
		return nil, err
	}
	if e, ok := m.(*msg.Error); ok {
		return nil, e
	}
	job, ok := m.(*msg.FetchJob)
	if !ok || len(fds) != 0 {
		return nil, fmt.Errorf("expected FetchJob, got %v", m.Kind())
	}
	return job, nil
}

// Caches prepares the job's caches; a cache whose URL is refused is nil and
// its CacheInfo carries the error.
func Caches(job *msg.FetchJob) ([]*Cache, []msg.CacheInfo) {
	caches := make([]*Cache, len(job.Caches))
	infos := make([]msg.CacheInfo, len(job.Caches))
	for i, u := range job.Caches {
		c, err := NewCache(u, time.Duration(job.ConnectTimeout)*time.Second)
		if err != nil {
			infos[i] = msg.CacheInfo{Err: short(err.Error())}
			continue
		}
		caches[i] = c
	}
	return caches, infos
}

// Serve answers the monitor: CacheInfos first, then one answer per request
// until the channel closes.
func Serve(mon *ipc.Conn, job *msg.FetchJob, caches []*Cache, infos []msg.CacheInfo, log *slog.Logger) error {
	dir, err := storepath.NewDir(job.StoreDir)
	if err != nil {
		return err
	}
	ctx := context.Background()
	for i, c := range caches {
		if c != nil {
			infos[i] = c.Info(ctx, job.StoreDir)
		}
	}
	if err := mon.Send(&msg.CacheInfos{Infos: infos}); err != nil {
		return err
	}
	usable := func(i uint64) (*Cache, error) {
		if i >= uint64(len(caches)) || caches[i] == nil || infos[i].Err != "" {
			return nil, fmt.Errorf("cache %d is not usable", i)
		}
		return caches[i], nil
	}
	for {
		m, fds, err := mon.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var ans msg.Message
		switch r := m.(type) {
		case *msg.GetNarInfo:
			ans = answerNarInfo(ctx, usable, dir, r)
		case *msg.GetNar:
			ans = answerNar(ctx, usable, r, fds[0])
		default:
			closeFiles(fds)
			return fmt.Errorf("unexpected request %v", m.Kind())
		}
		if e, ok := ans.(*msg.Error); ok {
			log.Warn("cache request failed", "err", e.Message)
		}
		if err := mon.Send(ans); err != nil {
			return err
		}
	}
}

func answerNarInfo(ctx context.Context, usable func(uint64) (*Cache, error), dir storepath.Dir, r *msg.GetNarInfo) msg.Message {
	c, err := usable(r.Cache)
	if err != nil {
		return msg.Errorf(msg.ClassPolicy, "%v", err)
	}
	ni, err := c.NarInfo(ctx, dir, r.HashPart)
	if err != nil {
		return msg.Errorf(msg.ClassPolicy, "%s", short(err.Error()))
	}
	return ni
}

func answerNar(ctx context.Context, usable func(uint64) (*Cache, error), r *msg.GetNar, pipe *os.File) msg.Message {
	defer pipe.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(pipe.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return msg.Errorf(msg.ClassInternal, "the NAR fd is not a pipe")
	}
	c, err := usable(r.Cache)
	if err != nil {
		return msg.Errorf(msg.ClassPolicy, "%v", err)
	}
	sent, err := c.Nar(ctx, r, pipe)
	if err != nil {
		return msg.Errorf(msg.ClassPolicy, "%s", short(err.Error()))
	}
	return sent
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

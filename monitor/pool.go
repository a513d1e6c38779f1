package monitor

import (
	"context"
	"fmt"
	"time"

	"privnix/ipc/msg"
)

// frontendPool keeps a few frontends started ahead of time, each waiting for
// its one client, so a connecting client does not wait for an exec. A pooled
// frontend has said Hello and nothing else; it is bound to exactly one client
// and never reused.
type frontendPool struct {
	m     *Monitor
	ready chan *child
}

// helloDeadline bounds how long a fresh child may take to say Hello.
const helloDeadline = 10 * time.Second

func newFrontendPool(m *Monitor, size int) *frontendPool {
	if size < 1 {
		size = 1
	}
	return &frontendPool{m: m, ready: make(chan *child, size)}
}

// fill keeps the pool full until ctx ends. Two fillers run so that a burst of
// clients is served at twice the exec rate.
func (p *frontendPool) fill(ctx context.Context) {
	for i := 0; i < 2; i++ {
		go p.filler(ctx)
	}
}

func (p *frontendPool) filler(ctx context.Context) {
	for ctx.Err() == nil {
		c, err := p.start()
		if err != nil {
			p.m.log.Error("starting a frontend", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case p.ready <- c:
		case <-ctx.Done():
			p.release(c)
			return
		}
	}
}

// take returns a started frontend, waiting for one if the pool is empty.
func (p *frontendPool) take(ctx context.Context) (*child, error) {
	select {
	case c := <-p.ready:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// start spawns a frontend as a fresh uid and waits for its Hello.
func (p *frontendPool) start() (*child, error) {
	uid, err := p.m.feUIDs.get()
	if err != nil {
		return nil, err
	}
	c, err := p.m.spawner.spawn(spawnSpec{role: roleFrontend, uid: uid, asUID: p.m.root})
	if err != nil {
		p.m.feUIDs.put(uid)
		return nil, err
	}
	go p.m.forwardLogs(c)
	if err := awaitHello(c); err != nil {
		p.release(c)
		return nil, err
	}
	return c, nil
}

func awaitHello(c *child) error {
	got := make(chan error, 1)
	go func() {
		m, fds, err := c.conn.Recv()
		closeFiles(fds)
		if err == nil && m.Kind() != msg.KindHello {
			err = fmt.Errorf("first message is %v, not Hello", m.Kind())
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			return fmt.Errorf("%s did not say Hello: %w", c.role, err)
		}
		return nil
	case <-time.After(helloDeadline):
		return fmt.Errorf("%s did not say Hello within %v", c.role, helloDeadline)
	}
}

// release kills a frontend and returns its uid: its PID namespace is gone, so
// no process of that uid is left.
func (p *frontendPool) release(c *child) {
	c.kill()
	p.m.feUIDs.put(c.uid)
}

func (p *frontendPool) drain() {
	for {
		select {
		case c := <-p.ready:
			p.release(c)
		default:
			return
		}
	}
}

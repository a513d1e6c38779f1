package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Substitution: each store gets a binary cache of its own (store paths
// depend on the store directory), served over loopback HTTP by this
// process and listed in the store's trusted-substituters, so the untrusted
// client may name it.

// substPaths is the closure the substitution workload fetches.
const substPaths = 1000

var cacheServer struct {
	once sync.Once
	root string // one directory per store, named like the store's root
	base string // http://127.0.0.1:PORT
	err  error
}

// cacheBase starts the HTTP server (once, serving work/caches, which goes
// with the bench's work directory) and returns its directory and URL.
func cacheBase(work string) (string, string, error) {
	cacheServer.once.Do(func() {
		root := filepath.Join(work, "caches")
		if err := os.MkdirAll(root, 0o755); err != nil {
			cacheServer.err = err
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			cacheServer.err = err
			return
		}
		go http.Serve(l, http.FileServer(http.Dir(root)))
		cacheServer.root, cacheServer.base = root, "http://"+l.Addr().String()
	})
	return cacheServer.root, cacheServer.base, cacheServer.err
}

// substituterConf is the nix.conf line that lets the client use its store's cache.
func substituterConf(storeRoot string) string {
	_, base, err := cacheBase(filepath.Dir(storeRoot))
	if err != nil {
		return ""
	}
	return "trusted-substituters = " + base + "/" + filepath.Base(storeRoot) + "\n"
}

// cacheURL is the store's cache, as the client names it.
func (t *Target) cacheURL() string {
	_, base, _ := cacheBase(filepath.Dir(t.store.Root))
	return base + "/" + filepath.Base(t.store.Root)
}

// substSetup adds a chain of substPaths text files, copies it into the
// store's cache with `nix copy` (root, through the daemon) and collects it,
// so that the workload finds it in the cache only.
func substSetup(in *Inputs) func(ctx context.Context, t *Target) error {
	return func(ctx context.Context, t *Target) error {
		if err := addChain(ctx, t, in, substPaths, "subst"); err != nil {
			return err
		}
		root, _, err := cacheBase(filepath.Dir(t.store.Root))
		if err != nil {
			return err
		}
		dir := filepath.Join(root, filepath.Base(t.store.Root))
		if err := t.store.runRoot(ctx, "nix", "--extra-experimental-features", "nix-command", "copy", "--to", "file://"+dir, t.last); err != nil {
			return err
		}
		_, err = t.store.Run(ctx, nil, "nix-store", "--gc")
		return err
	}
}

// runRoot runs a Nix command as root against the store's daemon.
func (s *Store) runRoot(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "NIX_REMOTE=daemon"}, s.env()...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, lastLines(errb.String(), 3))
	}
	return nil
}

// substGroup substitutes the whole closure of the chain's last path.
func substGroup(in *Inputs) *Group {
	return &Group{Name: "substitute", Setup: substSetup(in), Workloads: []*Workload{
		{ID: "substitute-1000", Title: fmt.Sprintf("`nix-store -r` of a %d-path closure from a local HTTP cache", substPaths),
			Kind: kindWall, MaxReps: 3,
			Pre: func(ctx context.Context, t *Target, rep int) error {
				_, err := t.store.Run(ctx, nil, "nix-store", "--gc")
				return err
			},
			Run: func(ctx context.Context, t *Target, rep int) error {
				_, err := t.store.Run(ctx, nil, "nix-store", "-r", t.last, "--option", "substituters", t.cacheURL())
				return err
			}},
	}}
}

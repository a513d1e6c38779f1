package main

import (
	"encoding/json"
	"os"
	"time"

	"privnix/internal/admin"
)

// StatusCmd is `privnix status`.
type StatusCmd struct {
	JSON    bool          `name:"json" help:"Print one JSON object: {version, started, store_paths, nar_bytes, connections: [{user, uid, pid, trusted, frontend_pid, frontend_uid, since}], builds: [{drv, build_user, build_uid, client_uid, client_pid, since}]}."`
	Timeout time.Duration `default:"10s" help:"Give up when privnixd has not answered after this long (default: ${default})."`
}

// Help is the long text of `privnix status --help`.
func (c *StatusCmd) Help() string {
	return `Shows what the running privnixd is doing: each client connection (the user
and pid the kernel reported, whether it is trusted, its frontend's pid and
uid, since when), each build in progress (derivation, build user, the client
that asked, since when), and the store's size (valid paths and their NAR
sizes added up).

It asks privnixd over its admin socket, <daemon socket directory>/privnix-admin
(NIX_DAEMON_SOCKET_PATH, NIX_STATE_DIR), which is mode 0600 and answers only
root (or the user privnixd runs as). privnixd answers from its own records.

Examples:
  sudo privnix status
  sudo privnix status --json | jq '.builds[] | .drv'`
}

func (c *StatusCmd) Run() error {
	p, err := admin.PathsFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	r, err := admin.Status(p, c.Timeout)
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	r.Print(os.Stdout, time.Now())
	return nil
}

package main

import (
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/alecthomas/kong"

	"privnix/internal/admin"
	"privnix/policy"
)

// SetupCmd is `privnix setup`.
type SetupCmd struct {
	BuildUsers  int    `name:"build-users" default:"32" placeholder:"N" help:"How many build users GROUP1..GROUPN to have (default: ${default}, as the Nix installer; at least max-jobs)."`
	Group       string `placeholder:"NAME" help:"The build users group (default: build-users-group from nix.conf, else nixbld)."`
	SocketGroup string `name:"socket-group" placeholder:"GROUP" help:"Restrict the daemon socket to members of GROUP (socket directory root:GROUP 0750; GROUP is created if missing). Without it the directory is root:root 0755, or stays as an earlier --socket-group left it."`
	FixExisting bool   `name:"fix-existing" help:"Also repair existing build users (other groups, login shell, home) and remove non-build users from the build users group; without it they are only reported."`
	DryRun      bool   `name:"dry-run" help:"Print the exact commands (groupadd, useradd, usermod, gpasswd, mkdir, chown, chmod, ln) instead of running them."`
}

// Help is the long text of `privnix setup --help`.
func (c *SetupCmd) Help() string {
	return `Prepares this machine for privnixd, as the Nix manual's multi-user
installation asks, and does nothing that is already done: running it again
changes nothing.

It reads NIX_STORE_DIR, NIX_STATE_DIR, NIX_LOG_DIR, NIX_CONF_DIR and
NIX_DAEMON_SOCKET_PATH, then nix.conf and privnix.conf in NIX_CONF_DIR, exactly
as privnixd does, so it also prepares a private store.

What it makes:
  - the build users group (groupadd --system) and the build users GROUP1..N:
    system users with no home (/var/empty), the nologin shell, member of the
    build users group only (useradd, as the manual's loop does);
  - the store directory, root:root 0755. Unlike Nix, privnix never makes the
    store group-writable by the build users: each build gets a store view of
    its own;
  - the state directory and db, gcroots (auto, per-user, the profiles link),
    profiles (per-user), temproots and the socket directory, root:root 0755;
  - the log directory and its drvs directory, root:root 0755;
  - with --socket-group, the socket directory root:GROUP 0750, so that only
    root and members of GROUP can reach the daemon.

What it checks and reports without fixing:
  - existing users named GROUPn that are not proper build users, and members
    of the build users group that are not build users (fixed with
    --fix-existing);
  - that privnix's own id ranges (privnix-frontend-uids,
    privnix-storeproc-uids, privnix-build-uids) are free in /etc/passwd,
    /etc/group, /etc/subuid and /etc/subgid.

Exit status: 0 when the machine is set up, 1 when something is left to do.

Examples:
  privnix setup --dry-run
  privnix setup --build-users 64 --socket-group nix-users
  NIX_STORE_DIR=/srv/nix/store NIX_STATE_DIR=/srv/nix/var privnix setup
  privnix setup && privnix doctor`
}

func (c *SetupCmd) Run() error { return c.run(os.Stdout, os.Stderr, os.Getenv) }

func (c *SetupCmd) run(stdout, stderr io.Writer, getenv func(string) string) error {
	s, paths, warnings, err := admin.LoadSettings(getenv)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if err != nil {
		return err
	}
	if !c.DryRun && os.Geteuid() != 0 {
		return fmt.Errorf("setup must run as root (it creates users and owns the store); try --dry-run")
	}
	pl, err := admin.PlanSetup(s, paths, admin.SetupOptions{
		BuildUsers: c.BuildUsers, Group: c.Group, SocketGroup: c.SocketGroup, FixExisting: c.FixExisting,
	})
	if err != nil {
		return err
	}
	if c.DryRun {
		pl.Print(stdout)
	} else if err := pl.Apply(stdout); err != nil {
		return err
	}
	if len(pl.Problems) > 0 {
		return fmt.Errorf("%d problem(s) left; see above", len(pl.Problems))
	}
	if len(pl.Actions) == 0 {
		fmt.Fprintln(stdout, "nothing to do: the set-up is complete")
	}
	return nil
}

// CompleteCmd is `privnix completion` (here because it is part of setting
// privnix up on a machine).
type CompleteCmd struct {
	Shell string `arg:"" enum:"bash,zsh" help:"The shell: ${enum}."`
}

// Help is the long text of `privnix completion --help`.
func (c *CompleteCmd) Help() string {
	return `Prints a completion script for bash or zsh, generated from privnix's own
command tree, so it always knows every command and flag. It completes
subcommands, flags, user names after --user, group names after --group and
--socket-group, and the operations of policy explain.

Examples:
  privnix completion bash > /etc/bash_completion.d/privnix
  source <(privnix completion bash)
  privnix completion zsh > "${fpath[1]}/_privnix"`
}

func (c *CompleteCmd) Run(ctx *kong.Context) error {
	return c.run(os.Stdout, ctx.Model.Node)
}

func (c *CompleteCmd) run(w io.Writer, app *kong.Node) error {
	ops := policy.Ops()
	slices.Sort(ops)
	return admin.Completion(w, c.Shell, app, map[string][]string{
		"policy explain": append([]string{"connect", "substitute", "set-option"}, ops...),
	})
}

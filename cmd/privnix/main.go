// Command privnix is the command line for admins and users of privnix: Nix
// formats (nar, hash, drv, store paths, keys), set-up and checks.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

// CLI is the whole command tree. Each subcommand lives in a file of its own.
type CLI struct {
	Nar       NarCmd       `cmd:"" help:"Serialise, restore and list Nix archives (NAR)."`
	Hash      HashCmd      `cmd:"" help:"Hash files and trees as nix-hash does, and convert hashes."`
	Drv       DrvCmd       `cmd:"" help:"Inspect derivations (.drv files)."`
	StorePath StorePathCmd `cmd:"" name:"store-path" help:"Compute the store path that an add would create."`
	Key       KeyCmd       `cmd:"" help:"Generate signing keys, sign and verify store paths."`
	Setup     SetupCmd     `cmd:"" help:"Create the build users, the store and state directories and the socket directory, as the Nix manual asks (idempotent)."`
	Doctor    DoctorCmd    `cmd:"" help:"Check the set-up privnixd relies on and say how to fix each problem."`
	Policy    PolicyCmd    `cmd:"" help:"Explain what privnixd decides for a user (policy explain)."`
	Status    StatusCmd    `cmd:"" help:"Show the running privnixd's connections, builds and store size (root only)."`
	Complete  CompleteCmd  `cmd:"" name:"completion" help:"Print a bash or zsh completion script."`
}

func main() {
	var cli CLI
	ctx := kong.Parse(&cli,
		kong.Name("privnix"),
		kong.Description("privnix: a privilege-separated Nix store daemon, and tools for its users."),
		kong.UsageOnError(),
	)
	if err := ctx.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "privnix: %v\n", err)
		os.Exit(1)
	}
}

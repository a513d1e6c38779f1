package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"privnix/internal/admin"
)

// PolicyCmd is `privnix policy`.
type PolicyCmd struct {
	Explain PolicyExplainCmd `cmd:"" help:"Say what privnixd would decide for a user and an operation, and which rule decides."`
}

// PolicyExplainCmd is `privnix policy explain`.
type PolicyExplainCmd struct {
	User             string   `required:"" short:"u" placeholder:"USER" help:"The user (name or uid) whose connection to explain."`
	Group            string   `short:"g" placeholder:"GROUP" help:"The group the user's process runs with (as after newgrp or sg); default: the user's primary group."`
	JSON             bool     `name:"json" help:"Print the answer as JSON."`
	Repair           bool     `help:"The operation asks for a repair (BuildPaths, BuildPathsWithResults, BuildDerivation, VerifyStore)."`
	IgnoreLiveness   bool     `name:"ignore-liveness" help:"CollectGarbage asks to ignore liveness."`
	InputAddressed   bool     `name:"input-addressed" help:"BuildDerivation gets an input-addressed derivation."`
	Signed           bool     `help:"The path (or realisation) carries a signature by a key in trusted-public-keys."`
	ContentAddressed bool     `name:"content-addressed" help:"The path is content-addressed and its ca field yields its name."`
	NoCheckSigs      bool     `name:"no-check-sigs" help:"The client asks not to check signatures (nix copy --no-check-sigs)."`
	Op               string   `arg:"" name:"OP" help:"connect, substitute, set-option, or a worker operation's name (AddToStoreNar, BuildDerivation, AddSignatures, ...)."`
	Args             []string `arg:"" optional:"" name:"ARGS" help:"substitute: URL; set-option: NAME VALUE; AddToStoreNar, AddMultipleToStore, ImportPaths: an optional store path, named in the answer."`
}

// Help is the long text of `privnix policy explain --help`.
func (c *PolicyExplainCmd) Help() string {
	return `Answers "what would privnixd do if USER asked for this?" without asking the
daemon: it loads nix.conf and privnix.conf from NIX_CONF_DIR as privnixd does,
resolves USER through the system's user database (LDAP and SSSD included) as
privnixd resolves a connecting uid, and calls the same policy functions
privnixd calls. It prints each decision (the connection, then the operation),
the rule or setting that made it, and, for a refusal, the exact text the
user's Nix client would print.

Operations:
  connect                  may USER connect, and is USER trusted?
  substitute URL           may USER use the binary cache URL (--option substituters URL)?
  set-option NAME VALUE    does USER's --option NAME VALUE take effect?
  OPERATION                a worker-protocol operation by its name, e.g.
                           AddToStoreNar, AddMultipleToStore, ImportPaths,
                           BuildDerivation, BuildPaths, AddSignatures,
                           VerifyStore, CollectGarbage, AddBuildLog,
                           RegisterDrvOutput; the flags describe the request.

Exit status: 0 when allowed, 2 when refused, 1 on an error (an unknown user,
settings that do not load).

Examples:
  privnix policy explain --user alice connect
  privnix policy explain --user alice --group nix-users AddSignatures
  privnix policy explain --user alice AddToStoreNar /nix/store/...-hello --no-check-sigs
  privnix policy explain --user bob substitute https://cache.example.org
  privnix policy explain --user alice set-option sandbox false`
}

func (c *PolicyExplainCmd) Run() error {
	code, err := c.run(os.Stdout, os.Getenv)
	if err != nil {
		return err
	}
	if code != 0 {
		os.Exit(code)
	}
	return nil
}

func (c *PolicyExplainCmd) run(w io.Writer, getenv func(string) string) (int, error) {
	e, err := admin.Explain(getenv, admin.ExplainRequest{
		User: c.User, Group: c.Group, Op: c.Op, Args: c.Args,
		Repair: c.Repair, IgnoreLiveness: c.IgnoreLiveness, InputAddressed: c.InputAddressed,
		Signed: c.Signed, ContentAddressed: c.ContentAddressed, NoCheckSigs: c.NoCheckSigs,
	})
	if err != nil {
		return 1, err
	}
	code := 0
	if !e.Allowed {
		code = 2
	}
	if c.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return code, enc.Encode(e)
	}
	p := e.Peer
	name := p.User
	if name == "" {
		name = fmt.Sprint(p.UID)
	}
	fmt.Fprintf(w, "user %s (uid %d), process group %s (gid %d), groups: %s\n", name, p.UID, orNumber(p.PrimaryGroup, p.GID), p.GID, strings.Join(p.Groups, " "))
	fmt.Fprintf(w, "settings: %s\n", strings.Join(e.Files, " then "))
	for _, st := range e.Steps {
		verdict := "allowed"
		if !st.Allow {
			verdict = "refused"
			if st.What == "setting" || st.What == "substituter" {
				verdict = "ignored (the client gets a warning and goes on without it)"
			}
		} else if st.What == "connect" {
			verdict = map[bool]string{true: "allowed, trusted", false: "allowed, not trusted"}[e.Trusted]
		}
		fmt.Fprintf(w, "%s: %s\n  rule: %s\n  %s: %s\n", st.What, verdict, st.Rule,
			map[bool]string{true: "why", false: "the client sees"}[st.Allow], st.Reason)
	}
	if e.Allowed {
		fmt.Fprintln(w, "=> allowed")
	} else {
		fmt.Fprintln(w, "=> refused")
	}
	return code, nil
}

func orNumber(name string, id uint32) string {
	if name == "" {
		return fmt.Sprint(id)
	}
	return name
}

// Help is the long text of `privnix policy --help`.
func (c *PolicyCmd) Help() string {
	return `Questions about privnixd's policy: who may connect, who is trusted, and what
each user may do. The answers come from the same code privnixd runs, under
the settings it would load now. See privnix policy explain --help.`
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"privnix/internal/admin"
)

// DoctorCmd is `privnix doctor`.
type DoctorCmd struct {
	JSON                bool   `name:"json" help:"Print the report as one JSON object: {\"status\", \"checks\": [{id, severity, title}], \"findings\": [{check, severity, message, fix}]}."`
	Privnixd            string `placeholder:"PATH" default:"/usr/local/bin/privnixd" help:"The installed privnixd to check (default: ${default})."`
	Libexec             string `placeholder:"DIR" default:"/usr/local/libexec/privnix" help:"The directory of privnixd's children (privnix-frontend, ...) to check (default: ${default})."`
	MaxTrustedGroupSize int    `name:"max-trusted-group-size" placeholder:"N" default:"10" help:"Flag an @group in trusted-users with more than N members (default: ${default})."`
}

// Help is the long text of `privnix doctor --help`.
func (c *DoctorCmd) Help() string {
	var b strings.Builder
	b.WriteString(`Checks a privnix installation and reports each problem with what to do
about it. It reads NIX_STORE_DIR, NIX_STATE_DIR, NIX_LOG_DIR, NIX_CONF_DIR,
NIX_DAEMON_SOCKET_PATH, nix.conf and privnix.conf exactly as privnixd does, and
looks at the users, groups, directories and binaries that privnixd relies on.
It changes nothing; ` + "`privnix setup`" + ` fixes most of what it finds. Run it as
root: some directories are readable only by root.

Exit status: 0 when every check passes, 1 when there are only warnings, 2 when
there is an error (the convention of monitoring plugins), 3 when the settings do
not load at all.

The checks (id, severity, what passes):
`)
	for _, ch := range admin.Checks() {
		fmt.Fprintf(&b, "  %-28s %-8s %s\n", ch.ID, ch.Severity, ch.Title)
	}
	b.WriteString(`
Examples:
  privnix doctor
  privnix doctor --json | jq '.findings[] | select(.severity == "error")'
  NIX_STORE_DIR=/srv/nix/store NIX_STATE_DIR=/srv/nix/var privnix doctor --privnixd /opt/privnix/bin/privnixd`)
	return b.String()
}

func (c *DoctorCmd) Run() error {
	if code := c.run(os.Stdout, os.Stderr, os.Getenv); code != 0 {
		os.Exit(code)
	}
	return nil
}

// run prints the report and returns the exit status.
func (c *DoctorCmd) run(stdout, stderr io.Writer, getenv func(string) string) int {
	r, err := admin.Doctor(getenv, admin.DoctorOptions{
		Privnixd: c.Privnixd, LibexecDir: c.Libexec, MaxTrustedGroupSize: c.MaxTrustedGroupSize,
	})
	if err != nil {
		if c.JSON {
			json.NewEncoder(stdout).Encode(map[string]string{"status": "error", "error": err.Error()})
		}
		fmt.Fprintf(stderr, "privnix doctor: %v\n", err)
		return 3
	}
	if c.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			Status string `json:"status"`
			*admin.Report
		}{r.Status(), r})
		return r.ExitCode()
	}
	counts := map[admin.Severity]int{}
	for _, f := range r.Findings {
		counts[f.Severity]++
		fmt.Fprintf(stdout, "%s [%s] %s\n    fix: %s\n", f.Severity, f.Check, f.Message, f.Fix)
	}
	if len(r.Findings) == 0 {
		fmt.Fprintf(stdout, "all %d checks passed\n", len(r.Checks))
	} else {
		fmt.Fprintf(stdout, "%d error(s), %d warning(s) from %d checks\n", counts[admin.Error], counts[admin.Warning], len(r.Checks))
	}
	return r.ExitCode()
}

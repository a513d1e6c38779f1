package admin

import (
	"strings"
	"testing"
)

// Explain on test-made users and groups: each case names the user, the
// request and the expected outcome, deciding rule and reason.
func TestExplain(t *testing.T) {
	requireRoot(t)
	allowedG, trustedG, buildG := uniqueName("pnxa"), uniqueName("pnxt"), uniqueName("pnxb")
	u1, u2, u3, b1 := uniqueName("pnxu"), uniqueName("pnxv"), uniqueName("pnxw"), uniqueName("pnxx")
	for _, g := range []string{allowedG, trustedG, buildG, u3} {
		newGroup(t, g)
	}
	newUser(t, u1, allowedG, "/usr/sbin/nologin")
	newUser(t, u2, allowedG, "/usr/sbin/nologin", trustedG)
	newUser(t, u3, u3, "/usr/sbin/nologin")
	newUser(t, b1, buildG, "/usr/sbin/nologin", buildG)
	s := newTestStore(t, "allowed-users = @"+allowedG+"\ntrusted-users = root @"+trustedG+"\nbuild-users-group = "+buildG+
		"\nsubstituters = https://cache.example.org\ntrusted-substituters = https://extra.example.org\n", "")

	for _, tc := range []struct {
		name    string
		req     ExplainRequest
		allowed bool
		trusted bool
		rule    string // of the last step
		reason  string // in the last step's reason
	}{
		{"allowed by group", ExplainRequest{User: u1, Op: "connect"}, true, false, "allowed-users", "matches '@" + allowedG + "'"},
		{"trusted by group", ExplainRequest{User: u2, Op: "connect"}, true, true, "trusted-users", "matches '@" + trustedG + "'"},
		{"not allowed", ExplainRequest{User: u3, Op: "connect"}, false, false, "allowed-users",
			"user '" + u3 + "' is not allowed to connect to the Nix daemon (not in 'allowed-users')"},
		{"allowed through the process's group", ExplainRequest{User: u3, Group: allowedG, Op: "connect"}, true, false, "allowed-users", "@" + allowedG},
		{"build user refused", ExplainRequest{User: b1, Op: "connect"}, false, false, "build-users-group", "build users must not talk to the daemon"},
		{"uid without a name", ExplainRequest{User: "3999999", Op: "connect"}, false, false, "allowed-users", "user '3999999' is not allowed"},
		{"root is trusted", ExplainRequest{User: "root", Op: "connect"}, true, true, "daemon-uid", "privnixd runs as"},
		{"refused before the op", ExplainRequest{User: u3, Op: "AddSignatures"}, false, false, "allowed-users", "not in 'allowed-users'"},
		{"AddSignatures untrusted", ExplainRequest{User: u1, Op: "AddSignatures"}, false, false, "trusted-users", "you are not privileged to add signatures"},
		{"AddSignatures trusted", ExplainRequest{User: u2, Op: "AddSignatures"}, true, true, "trusted-users", "trusted user"},
		{"input-addressed BuildDerivation", ExplainRequest{User: u1, Op: "BuildDerivation", InputAddressed: true}, false, false, "trusted-users",
			"you are not privileged to build input-addressed derivations"},
		{"GC ignoring liveness, even trusted", ExplainRequest{User: u2, Op: "CollectGarbage", IgnoreLiveness: true}, false, true, "ignore-liveness",
			"you are not allowed to ignore liveness"},
		{"unsigned import", ExplainRequest{User: u1, Op: "AddToStoreNar", NoCheckSigs: true}, false, false, "require-sigs", "lacks a valid signature"},
		{"content-addressed import", ExplainRequest{User: u1, Op: "AddToStoreNar", ContentAddressed: true}, true, false, "content-addressed", "content-addressed"},
		{"trusted unchecked import", ExplainRequest{User: u2, Op: "AddMultipleToStore", NoCheckSigs: true}, true, true, "trusted-users", "not to check signatures"},
		{"unsigned import names the path", ExplainRequest{User: u1, Op: "AddMultipleToStore", Args: []string{"/nix/store/x-y"}}, false, false, "require-sigs",
			"cannot add path '/nix/store/x-y' because it lacks a valid signature"},
		{"ImportPaths untrusted signed", ExplainRequest{User: u1, Op: "ImportPaths", Signed: true}, true, false, "trusted-public-keys", "signed"},
		{"listed substituter", ExplainRequest{User: u1, Op: "substitute", Args: []string{"https://cache.example.org"}}, true, false, "substituters", "'substituters'"},
		{"trusted substituter", ExplainRequest{User: u1, Op: "substitute", Args: []string{"https://extra.example.org/"}}, false, false, "trusted-substituters",
			"ignoring untrusted substituter 'https://extra.example.org/'"},
		{"trusted substituter exact", ExplainRequest{User: u1, Op: "substitute", Args: []string{"https://extra.example.org"}}, true, false, "trusted-substituters", "'trusted-substituters'"},
		{"unlisted substituter", ExplainRequest{User: u1, Op: "substitute", Args: []string{"https://evil.example.org"}}, false, false, "trusted-substituters",
			"ignoring untrusted substituter 'https://evil.example.org'"},
		{"any substituter when trusted", ExplainRequest{User: u2, Op: "substitute", Args: []string{"https://evil.example.org"}}, true, true, "trusted-users", "any substituter"},
		{"timeout from anyone", ExplainRequest{User: u1, Op: "set-option", Args: []string{"timeout", "10"}}, true, false, "untrusted-settings", "timeout = 10 applies"},
		{"sandbox from an untrusted user", ExplainRequest{User: u1, Op: "set-option", Args: []string{"sandbox", "false"}}, false, false, "trusted-users",
			"ignoring the client-specified setting 'sandbox', because it is a restricted setting"},
		{"sandbox from a trusted user", ExplainRequest{User: u2, Op: "set-option", Args: []string{"sandbox", "false"}}, true, true, "trusted-users", "sandbox = false applies"},
		{"privnix setting from a trusted user", ExplainRequest{User: u2, Op: "set-option", Args: []string{"privnix-frontend-pool", "9"}}, false, true, "daemon-only",
			"can only be set in the daemon's nix.conf"},
		{"bad value", ExplainRequest{User: u2, Op: "set-option", Args: []string{"max-jobs", "many"}}, false, true, "invalid-value", "max-jobs"},
		{"unknown setting", ExplainRequest{User: u2, Op: "set-option", Args: []string{"no-such-thing", "1"}}, false, true, "unknown-setting", "ignored without a warning"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Explain(s.Getenv, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			last := e.Steps[len(e.Steps)-1]
			if e.Allowed != tc.allowed || e.Trusted != tc.trusted || last.Rule != tc.rule || !strings.Contains(last.Reason, tc.reason) {
				t.Fatalf("got allowed %v trusted %v, last step %+v; want allowed %v trusted %v rule %s reason ~ %q (steps %+v)",
					e.Allowed, e.Trusted, last, tc.allowed, tc.trusted, tc.rule, tc.reason, e.Steps)
			}
		})
	}
}

func TestExplainErrors(t *testing.T) {
	s := newTestStore(t, "", "")
	for _, tc := range []struct {
		req  ExplainRequest
		want string
	}{
		{ExplainRequest{User: "root", Op: "NoSuchOp"}, "unknown operation 'NoSuchOp'"},
		{ExplainRequest{User: "root", Op: "substitute"}, "usage: substitute URL"},
		{ExplainRequest{User: "root", Op: "set-option", Args: []string{"timeout"}}, "usage: set-option NAME VALUE"},
		{ExplainRequest{User: "root", Op: "connect", Args: []string{"x"}}, "takes no arguments"},
		{ExplainRequest{User: "root", Op: "AddToStoreNar", Args: []string{"a", "b"}}, "usage: AddToStoreNar [PATH]"},
		{ExplainRequest{User: "root", Op: "AddSignatures", Args: []string{"a"}}, "takes no arguments"},
		{ExplainRequest{User: uniqueName("pnxnone"), Op: "connect"}, "no user"},
		{ExplainRequest{User: "root", Group: uniqueName("pnxnone"), Op: "connect"}, "group"},
	} {
		if _, err := Explain(s.Getenv, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.req, err, tc.want)
		}
	}
}

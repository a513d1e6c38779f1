package admin

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"privnix/internal/userdb"
	"privnix/nix/conf"
	"privnix/policy"
)

// ExplainRequest is what `privnix policy explain` is asked.
type ExplainRequest struct {
	User  string   // name or decimal uid
	Group string   // the connecting process's group (name or gid); "" = the user's primary group
	Op    string   // "connect", "substitute", "set-option" or a worker operation's name
	Args  []string // substitute: URL; set-option: NAME VALUE; AddToStoreNar, AddMultipleToStore, ImportPaths: [PATH]
	// Flags of a worker operation's request.
	Repair, IgnoreLiveness, InputAddressed, Signed, ContentAddressed, NoCheckSigs bool
}

// Step is one decision on the way to the answer.
type Step struct {
	What   string `json:"what"`   // "connect", the operation, "path", "substituter", "setting"
	Allow  bool   `json:"allow"`  // whether this step lets the request through
	Rule   string `json:"rule"`   // the setting or rule that decided
	Reason string `json:"reason"` // why; on refusal, the text the client sees
}

// Explanation is the answer: who the user is to privnixd, each decision, and
// the outcome.
type Explanation struct {
	Peer    policy.Peer `json:"peer"`
	Trusted bool        `json:"trusted"`
	Steps   []Step      `json:"steps"`
	Allowed bool        `json:"allowed"`
	Files   []string    `json:"settings_files"`
}

// DaemonUID is the uid privnixd runs as in a normal installation.
const DaemonUID = 0

// Explain says what privnixd would decide for the request under the
// settings it would load (through getenv), with the same policy functions
// privnixd calls: the peer is resolved as the monitor resolves a connecting
// uid (NSS: the user's groups by getgrouplist, the process's group by gid).
func Explain(getenv func(string) string, req ExplainRequest) (*Explanation, error) {
	s, paths, _, err := LoadSettings(getenv)
	if err != nil {
		return nil, err
	}
	peer, err := resolvePeer(req.User, req.Group)
	if err != nil {
		return nil, err
	}
	e := &Explanation{Peer: peer, Files: paths.ConfFiles()}
	allowed, trusted, d := policy.Connect(peer, s, DaemonUID)
	e.Trusted = trusted
	e.Steps = append(e.Steps, Step{"connect", allowed, d.Rule, d.Reason})
	if allowed {
		steps, err := explainOp(req, trusted, s)
		if err != nil {
			return nil, err
		}
		e.Steps = append(e.Steps, steps...)
	} else if err := checkOpSyntax(req); err != nil {
		return nil, err
	}
	e.Allowed = true
	for _, st := range e.Steps {
		e.Allowed = e.Allowed && st.Allow
	}
	return e, nil
}

// resolvePeer makes the policy.Peer privnixd would see for a process of user
// running with group: monitor.resolvePeer's lookups, by name.
func resolvePeer(user, group string) (policy.Peer, error) {
	db := userdb.New(userdb.Options{})
	var id userdb.Identity
	if n, err := strconv.ParseUint(user, 10, 32); err == nil {
		if id, err = db.LookupUID(uint32(n)); err != nil {
			return policy.Peer{}, err
		}
		id.UID = uint32(n)
	} else {
		id, err = db.LookupUser(user)
		if errors.Is(err, userdb.ErrNotFound) {
			return policy.Peer{}, fmt.Errorf("no user '%s' in the user database", user)
		}
		if err != nil {
			return policy.Peer{}, err
		}
	}
	gid := id.GID
	if group != "" {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			gid = uint32(n)
		} else if gid, err = db.LookupGroup(group); err != nil {
			return policy.Peer{}, fmt.Errorf("group '%s': %w", group, err)
		}
	}
	p := policy.Peer{UID: id.UID, GID: gid, User: id.User, Groups: id.Groups}
	if g, err := db.GroupName(gid); err == nil {
		p.PrimaryGroup = g
	}
	return p, nil
}

// importOps check each path with policy.CanImport.
var importOps = []string{"AddToStoreNar", "AddMultipleToStore", "ImportPaths"}

func checkOpSyntax(req ExplainRequest) error {
	switch req.Op {
	case "connect":
		return argCount(req, 0, "")
	case "substitute":
		return argCount(req, 1, "URL")
	case "set-option":
		return argCount(req, 2, "NAME VALUE")
	}
	if slices.Contains(importOps, req.Op) {
		if len(req.Args) > 1 {
			return fmt.Errorf("usage: %s [PATH]", req.Op)
		}
		return nil // an optional store path, for the refusal's text
	}
	if !slices.Contains(policy.Ops(), req.Op) {
		ops := policy.Ops()
		slices.Sort(ops)
		return fmt.Errorf("unknown operation '%s': use connect, substitute URL, set-option NAME VALUE or a worker operation: %s",
			req.Op, strings.Join(ops, ", "))
	}
	return argCount(req, 0, "")
}

func argCount(req ExplainRequest, n int, usage string) error {
	if len(req.Args) != n {
		if n == 0 {
			return fmt.Errorf("%s takes no arguments (got %q)", req.Op, req.Args)
		}
		return fmt.Errorf("usage: %s %s", req.Op, usage)
	}
	return nil
}

func explainOp(req ExplainRequest, trusted bool, s *conf.Settings) ([]Step, error) {
	if err := checkOpSyntax(req); err != nil {
		return nil, err
	}
	switch req.Op {
	case "connect":
		return nil, nil
	case "substitute":
		return explainSubstituter(req.Args[0], trusted, s), nil
	case "set-option":
		return explainSetting(req.Args[0], req.Args[1], trusted, s), nil
	}
	d := policy.CheckOp(req.Op, policy.Request{Trusted: trusted, Repair: req.Repair, IgnoreLiveness: req.IgnoreLiveness,
		InputAddressed: req.InputAddressed, SigValid: req.Signed, Subject: "<realisation>"})
	steps := []Step{{req.Op, d.Allow, d.Rule, d.Reason}}
	if d.Allow && slices.Contains(importOps, req.Op) {
		dontCheck, _ := policy.ImportFlags(trusted, req.NoCheckSigs, false)
		if req.Op == "ImportPaths" {
			dontCheck = trusted
		}
		path := "<path>"
		if len(req.Args) == 1 {
			path = req.Args[0]
		}
		c := policy.CanImport(path, trusted, req.ContentAddressed, req.Signed, s.RequireSigs, dontCheck)
		steps = append(steps, Step{"path", c.Allow, c.Rule, c.Reason})
	}
	return steps, nil
}

func explainSubstituter(url string, trusted bool, s *conf.Settings) []Step {
	apply, warnings := policy.FilterOverrides(trusted, []policy.Override{{Name: "substituters", Value: url}}, s)
	if len(apply) == 1 && slices.Contains(strings.Fields(apply[0].Value), url) {
		rule, why := "trusted-users", "a trusted user may use any substituter"
		switch {
		case trusted:
		case slices.Contains(s.Substituters, url) || slices.Contains(s.Substituters, url+"/"):
			rule, why = "substituters", "the admin lists it in 'substituters'"
		default:
			rule, why = "trusted-substituters", "the admin lists it in 'trusted-substituters'"
		}
		if s.RequireSigs {
			why += "; what it serves must be signed by a key in 'trusted-public-keys' (require-sigs)"
		}
		return []Step{{"substituter", true, rule, why}}
	}
	return []Step{{"substituter", false, "trusted-substituters", strings.Join(warnings, "; ")}}
}

func explainSetting(name, value string, trusted bool, s *conf.Settings) []Step {
	apply, warnings := policy.FilterOverrides(trusted, []policy.Override{{Name: name, Value: value}}, s)
	if len(apply) == 1 {
		rule, why := "trusted-users", "a trusted user's settings apply"
		switch {
		case trusted:
		case apply[0].Name == "substituters":
			rule, why = "trusted-substituters", "only the substituters the admin listed apply: '"+apply[0].Value+"'"
			if len(warnings) > 0 {
				why += "; " + strings.Join(warnings, "; ")
			}
		default:
			rule, why = "untrusted-settings", "timeout, repeat, connect-timeout and builders = \"\" apply for every user"
		}
		return []Step{{"setting", true, rule, fmt.Sprintf("%s = %s applies: %s", apply[0].Name, apply[0].Value, why)}}
	}
	if len(warnings) == 0 {
		return []Step{{"setting", false, "unknown-setting", fmt.Sprintf("'%s' is not a setting privnix knows: it is ignored without a warning, as Nix does", name)}}
	}
	rule := "trusted-users"
	if !strings.HasPrefix(warnings[0], "ignoring") {
		rule = "invalid-value"
	} else if c, _ := conf.Canonical(strings.TrimPrefix(name, "extra-")); strings.HasPrefix(c, "privnix-") || strings.HasPrefix(name, "privnix-") {
		rule = "daemon-only"
	}
	return []Step{{"setting", false, rule, strings.Join(warnings, "; ")}}
}

package policy

import (
	"fmt"

	"privnix/nix/conf"
)

// Request is what an operation's check needs to know about one request.
type Request struct {
	Trusted        bool
	Repair         bool   // BuildPaths/BuildPathsWithResults/BuildDerivation buildMode repair; VerifyStore repair
	IgnoreLiveness bool   // CollectGarbage
	InputAddressed bool   // BuildDerivation: some output is input-addressed
	SigValid       bool   // RegisterDrvOutput: the realisation is signed by a key in trusted-public-keys
	Subject        string // for messages: the realisation id of RegisterDrvOutput
}

// opRule is one row of the operation table.
type opRule struct {
	rule  string // the setting or rule that decides, for `privnix policy explain`
	check func(r Request) Decision
}

func anyUser(rule string) opRule {
	return opRule{rule, func(Request) Decision { return allow(rule, "allowed for every connected user") }}
}

func trustedOnly(msg string) opRule {
	return opRule{"trusted-users", func(r Request) Decision {
		if r.Trusted {
			return allow("trusted-users", "trusted user")
		}
		return deny("trusted-users", msg)
	}}
}

// noUntrustedRepair refuses repair (rebuilding or re-fetching a valid path)
// from untrusted users.
func noUntrustedRepair(msg string) opRule {
	return opRule{"trusted-users", func(r Request) Decision {
		if r.Repair && !r.Trusted {
			return deny("trusted-users", msg)
		}
		return allow("trusted-users", "no repair requested, or trusted user")
	}}
}

const (
	msgRepairBuild = "repairing is not allowed because you are not in 'trusted-users'"
	msgRepairPaths = "you are not privileged to repair paths"
)

// ops is the whole table of worker operations and who may use them, keyed by
// the operation's name in the worker protocol. nix-daemon 2.8's error texts.
var ops = map[string]opRule{
	"IsValidPath":                 anyUser("allowed-users"),
	"QueryReferrers":              anyUser("allowed-users"),
	"AddToStore":                  anyUser("allowed-users"), // its repair flag is not restricted in Nix: the path is content-addressed
	"AddTextToStore":              anyUser("allowed-users"),
	"BuildPaths":                  noUntrustedRepair(msgRepairBuild),
	"BuildPathsWithResults":       noUntrustedRepair(msgRepairBuild),
	"EnsurePath":                  anyUser("allowed-users"),
	"AddTempRoot":                 anyUser("allowed-users"),
	"AddIndirectRoot":             anyUser("allowed-users"),
	"SyncWithGC":                  anyUser("allowed-users"),
	"FindRoots":                   {"trusted-users", findRoots},
	"ExportPath":                  anyUser("allowed-users"),
	"QueryDeriver":                anyUser("allowed-users"),
	"SetOptions":                  {"trusted-users", setOptions},
	"CollectGarbage":              {"ignore-liveness", collectGarbage},
	"QuerySubstitutablePathInfo":  anyUser("allowed-users"),
	"QueryDerivationOutputs":      anyUser("allowed-users"),
	"QueryAllValidPaths":          anyUser("allowed-users"),
	"QueryPathInfo":               anyUser("allowed-users"),
	"ImportPaths":                 {"require-sigs", importing},
	"QueryDerivationOutputNames":  anyUser("allowed-users"),
	"QueryPathFromHashPart":       anyUser("allowed-users"),
	"QuerySubstitutablePathInfos": anyUser("allowed-users"),
	"QueryValidPaths":             anyUser("allowed-users"),
	"QuerySubstitutablePaths":     anyUser("allowed-users"),
	"QueryValidDerivers":          anyUser("allowed-users"),
	"OptimiseStore":               anyUser("allowed-users"),
	"VerifyStore":                 noUntrustedRepair(msgRepairPaths),
	"BuildDerivation":             {"trusted-users", buildDerivation},
	"AddSignatures":               trustedOnly("you are not privileged to add signatures"),
	"NarFromPath":                 anyUser("allowed-users"),
	"AddToStoreNar":               {"require-sigs", importing},
	"QueryMissing":                anyUser("allowed-users"),
	"QueryDerivationOutputMap":    anyUser("allowed-users"),
	"RegisterDrvOutput":           {"trusted-public-keys", registerDrvOutput},
	"QueryRealisation":            anyUser("allowed-users"),
	"AddMultipleToStore":          {"require-sigs", importing},
	"AddBuildLog":                 trustedOnly("you are not privileged to add logs"),
	"AddPermRoot":                 trustedOnly("you are not privileged to create perm roots"),
}

// CheckOp decides whether a connected user may run the worker operation op
// with the given request. An unknown operation is refused.
func CheckOp(op string, r Request) Decision {
	row, ok := ops[op]
	if !ok {
		return deny("unknown-op", fmt.Sprintf("operation '%s' is not supported by privnix", op))
	}
	return row.check(r)
}

// OpRule names the setting or rule that governs op ("" for an unknown op).
func OpRule(op string) string { return ops[op].rule }

// Ops returns the names of every operation in the table.
func Ops() []string {
	out := make([]string, 0, len(ops))
	for name := range ops {
		out = append(out, name)
	}
	return out
}

func setOptions(r Request) Decision {
	if r.Trusted {
		return allow("trusted-users", "a trusted user's overrides are all applied (except privnix's own settings)")
	}
	return allow("trusted-users", "overrides are filtered: only timeout, repeat, connect-timeout, builders = \"\" and listed substituters apply")
}

func collectGarbage(r Request) Decision {
	if r.IgnoreLiveness {
		return deny("ignore-liveness", "you are not allowed to ignore liveness")
	}
	return allow("allowed-users", "any user may delete dead paths")
}

func findRoots(r Request) Decision {
	if r.Trusted {
		return allow("trusted-users", "all roots are shown")
	}
	return allow("trusted-users", "temporary and runtime roots are shown as '"+CensoredLink+"'")
}

// CensoredLink is what FindRoots shows untrusted users instead of the link of a
// temporary or runtime root.
const CensoredLink = "{censored}"

// CensorRoots reports whether FindRoots must hide temporary and runtime roots.
func CensorRoots(trusted bool) bool { return !trusted }

func importing(r Request) Decision {
	return allow("require-sigs", "each path is checked with CanImport")
}

func buildDerivation(r Request) Decision {
	switch {
	case r.Trusted:
		return allow("trusted-users", "trusted users may build any derivation handed over directly")
	case r.Repair: // privnix: Nix 2.8 does not check repair here; no untrusted repair anywhere
		return deny("trusted-users", msgRepairBuild)
	case r.InputAddressed:
		return deny("trusted-users", "you are not privileged to build input-addressed derivations")
	}
	return allow("trusted-users", "content-addressed derivations may be built by anyone")
}

// registerDrvOutput: an unsigned realisation from an untrusted user would let it
// claim any output for a CA derivation (GHSA-jm6c-h95p-6qhj).
func registerDrvOutput(r Request) Decision {
	if r.Trusted || r.SigValid {
		return allow("trusted-public-keys", "trusted user, or realisation signed by a trusted key")
	}
	return deny("trusted-public-keys", fmt.Sprintf(
		"cannot register realisation '%s' because it lacks a valid signature", r.Subject))
}

// ImportFlags returns the dontCheckSigs and ultimate flags that take effect for
// AddToStoreNar: an untrusted client can set neither.
func ImportFlags(trusted, dontCheckSigs, ultimate bool) (bool, bool) {
	if !trusted {
		return false, false
	}
	return dontCheckSigs, ultimate
}

// CanImport decides whether a path with known metadata (AddToStoreNar,
// AddMultipleToStore, ImportPaths) may be added. path is for the message only.
// contentAddressed means the path's ca field really yields this path; sigValid
// that it carries a signature by a key in trusted-public-keys.
func CanImport(path string, trusted, contentAddressed, sigValid, requireSigs, dontCheckSigs bool) Decision {
	switch {
	case trusted && dontCheckSigs:
		return allow("trusted-users", "a trusted user asked not to check signatures")
	case !requireSigs:
		return allow("require-sigs", "'require-sigs' is false")
	case contentAddressed:
		return allow("content-addressed", "the path is content-addressed, so it needs no signature")
	case sigValid:
		return allow("trusted-public-keys", "the path is signed by a key in 'trusted-public-keys'")
	}
	return deny("require-sigs", fmt.Sprintf("cannot add path '%s' because it lacks a valid signature", path))
}

// Explain lists the decisions that apply when p runs op: the connection
// check and, if p may connect, the operation's check with p's trust level.
// It is what `privnix policy explain USER OP` prints.
func Explain(p Peer, s *conf.Settings, daemonUID uint32, op string, r Request) []Decision {
	allowed, trusted, d := Connect(p, s, daemonUID)
	if !allowed {
		return []Decision{d}
	}
	r.Trusted = trusted
	return []Decision{d, CheckOp(op, r)}
}

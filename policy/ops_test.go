package policy

import (
	"sort"
	"testing"
)

// TestCheckOp mirrors nix-daemon 2.8's trust matrix (docs/nix-protocol.md §4.4)
// plus privnix's stricter rows.
func TestCheckOp(t *testing.T) {
	const (
		repairBuild = "repairing is not allowed because you are not in 'trusted-users'"
	)
	tests := []struct {
		op     string
		req    Request
		allow  bool
		reason string
	}{
		{"IsValidPath", Request{}, true, ""},
		{"QueryPathInfo", Request{}, true, ""},
		{"AddToStore", Request{Repair: true}, true, ""},
		{"AddSignatures", Request{}, false, "you are not privileged to add signatures"},
		{"AddSignatures", Request{Trusted: true}, true, ""},
		{"VerifyStore", Request{}, true, ""},
		{"VerifyStore", Request{Repair: true}, false, "you are not privileged to repair paths"},
		{"VerifyStore", Request{Repair: true, Trusted: true}, true, ""},
		{"BuildPaths", Request{}, true, ""},
		{"BuildPaths", Request{Repair: true}, false, repairBuild},
		{"BuildPaths", Request{Repair: true, Trusted: true}, true, ""},
		{"BuildPathsWithResults", Request{Repair: true}, false, repairBuild},
		{"BuildDerivation", Request{InputAddressed: true}, false, "you are not privileged to build input-addressed derivations"},
		{"BuildDerivation", Request{}, true, ""},
		{"BuildDerivation", Request{Repair: true}, false, repairBuild},
		{"BuildDerivation", Request{InputAddressed: true, Trusted: true}, true, ""},
		{"AddBuildLog", Request{}, false, "you are not privileged to add logs"},
		{"AddBuildLog", Request{Trusted: true}, true, ""},
		{"AddPermRoot", Request{}, false, "you are not privileged to create perm roots"},
		{"CollectGarbage", Request{}, true, ""},
		{"CollectGarbage", Request{IgnoreLiveness: true}, false, "you are not allowed to ignore liveness"},
		{"CollectGarbage", Request{IgnoreLiveness: true, Trusted: true}, false, "you are not allowed to ignore liveness"},
		{"FindRoots", Request{}, true, "temporary and runtime roots are shown as '{censored}'"},
		{"FindRoots", Request{Trusted: true}, true, "all roots are shown"},
		{"RegisterDrvOutput", Request{Subject: "sha256:abc!out"}, false, "cannot register realisation 'sha256:abc!out' because it lacks a valid signature"},
		{"RegisterDrvOutput", Request{SigValid: true}, true, ""},
		{"RegisterDrvOutput", Request{Trusted: true}, true, ""},
		{"AddToStoreNar", Request{}, true, "each path is checked with CanImport"},
		{"NoSuchOp", Request{Trusted: true}, false, "operation 'NoSuchOp' is not supported by privnix"},
	}
	for _, tt := range tests {
		d := CheckOp(tt.op, tt.req)
		if d.Allow != tt.allow || (tt.reason != "" && d.Reason != tt.reason) || d.Rule == "" {
			t.Errorf("CheckOp(%s, %+v) = %+v; want allow=%v reason %q", tt.op, tt.req, d, tt.allow, tt.reason)
		}
	}
}

func TestOpsTableComplete(t *testing.T) {
	// Every operation of the 2.8 worker protocol plus AddPermRoot.
	want := []string{"AddBuildLog", "AddIndirectRoot", "AddMultipleToStore", "AddPermRoot", "AddSignatures",
		"AddTempRoot", "AddTextToStore", "AddToStore", "AddToStoreNar", "BuildDerivation", "BuildPaths",
		"BuildPathsWithResults", "CollectGarbage", "EnsurePath", "ExportPath", "FindRoots", "ImportPaths",
		"IsValidPath", "NarFromPath", "OptimiseStore", "QueryAllValidPaths", "QueryDerivationOutputMap",
		"QueryDerivationOutputNames", "QueryDerivationOutputs", "QueryDeriver", "QueryMissing",
		"QueryPathFromHashPart", "QueryPathInfo", "QueryRealisation", "QueryReferrers",
		"QuerySubstitutablePathInfo", "QuerySubstitutablePathInfos", "QuerySubstitutablePaths",
		"QueryValidDerivers", "QueryValidPaths", "RegisterDrvOutput", "SetOptions", "SyncWithGC", "VerifyStore"}
	got := Ops()
	sort.Strings(got)
	if len(got) != len(want) {
		t.Fatalf("Ops() = %v\nwant %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] || OpRule(want[i]) == "" {
			t.Errorf("op %d: got %q (rule %q), want %q", i, got[i], OpRule(got[i]), want[i])
		}
	}
	if !CensorRoots(false) || CensorRoots(true) {
		t.Errorf("CensorRoots: untrusted must be censored, trusted not")
	}
}

func TestCanImport(t *testing.T) {
	const lacks = "cannot add path '/nix/store/aaa-x' because it lacks a valid signature"
	tests := []struct {
		trusted, ca, sig, requireSigs, dontCheck bool
		allow                                    bool
		rule                                     string
	}{
		{false, false, false, true, false, false, "require-sigs"},
		{false, false, false, true, true, false, "require-sigs"}, // untrusted dontCheckSigs ignored
		{false, true, false, true, true, true, "content-addressed"},
		{false, false, true, true, false, true, "trusted-public-keys"},
		{false, false, false, false, false, true, "require-sigs"},
		{true, false, false, true, false, false, "require-sigs"}, // trusted but checking
		{true, false, false, true, true, true, "trusted-users"},
		{true, false, true, true, false, true, "trusted-public-keys"},
	}
	for _, tt := range tests {
		d := CanImport("/nix/store/aaa-x", tt.trusted, tt.ca, tt.sig, tt.requireSigs, tt.dontCheck)
		if d.Allow != tt.allow || d.Rule != tt.rule || (!tt.allow && d.Reason != lacks) {
			t.Errorf("CanImport(%+v) = %+v", tt, d)
		}
	}
	for _, tt := range []struct{ trusted, dcs, ult, wantDcs, wantUlt bool }{
		{false, true, true, false, false}, {true, true, true, true, true}, {true, false, true, false, true}} {
		if d, u := ImportFlags(tt.trusted, tt.dcs, tt.ult); d != tt.wantDcs || u != tt.wantUlt {
			t.Errorf("ImportFlags(%v,%v,%v) = %v,%v", tt.trusted, tt.dcs, tt.ult, d, u)
		}
	}
}

func TestExplain(t *testing.T) {
	s := settings(t, "allowed-users = alice bob", "trusted-users = @trusted")
	tests := []struct {
		peer  Peer
		op    string
		rules []string
		allow []bool
	}{
		{carol, "IsValidPath", []string{"allowed-users"}, []bool{false}},
		{alice, "AddSignatures", []string{"allowed-users", "trusted-users"}, []bool{true, false}},
		{bob, "AddSignatures", []string{"trusted-users", "trusted-users"}, []bool{true, true}},
		{bob, "CollectGarbage", []string{"trusted-users", "allowed-users"}, []bool{true, true}},
	}
	for _, tt := range tests {
		ds := Explain(tt.peer, s, 0, tt.op, Request{Trusted: true /* overridden by the connection check */})
		if len(ds) != len(tt.rules) {
			t.Fatalf("Explain(%s, %s) = %+v", tt.peer.User, tt.op, ds)
		}
		for i, d := range ds {
			if d.Rule != tt.rules[i] || d.Allow != tt.allow[i] {
				t.Errorf("Explain(%s, %s)[%d] = %+v, want rule %s allow %v", tt.peer.User, tt.op, i, d, tt.rules[i], tt.allow[i])
			}
		}
	}
}

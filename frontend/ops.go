package frontend

// opFlags carry an operation's policy.
type opFlags uint8

const (
	// needsTrust: untrusted clients get opInfo.refusal once the arguments are read.
	needsTrust opFlags = 1 << iota
	// refuseEarly: that refusal comes before work, so (as in Nix) the connection closes.
	refuseEarly
)

// opInfo is one row of the operation table. Every handler reads all of its arguments
// first (errors there close the connection: the stream position is lost), then calls
// c.begin() (trust check, start of work), then answers with c.reply or an error,
// which is sent as STDERR_ERROR and keeps the connection usable.
type opInfo struct {
	name    string
	handle  func(c *conn) error
	flags   opFlags
	refusal string
}

// ops is every worker operation of §4.2, by number. Unknown numbers close the connection.
var ops = map[uint64]opInfo{
	1:  {name: "IsValidPath", handle: opIsValidPath},
	3:  {name: "HasSubstitutes", handle: opHasSubstitutes},
	4:  {name: "QueryPathHash", handle: opQueryPathHash},
	5:  {name: "QueryReferences", handle: opQueryReferences},
	6:  {name: "QueryReferrers", handle: opQueryReferrers},
	7:  {name: "AddToStore", handle: opAddToStore},
	8:  {name: "AddTextToStore", handle: opAddTextToStore},
	9:  {name: "BuildPaths", handle: opBuildPaths},
	10: {name: "EnsurePath", handle: opEnsurePath},
	11: {name: "AddTempRoot", handle: opAddTempRoot},
	12: {name: "AddIndirectRoot", handle: opAddIndirectRoot},
	13: {name: "SyncWithGC", handle: opSyncWithGC},
	14: {name: "FindRoots", handle: opFindRoots},
	16: {name: "ExportPath", handle: opExportPath},
	18: {name: "QueryDeriver", handle: opQueryDeriver},
	19: {name: "SetOptions", handle: opSetOptions},
	20: {name: "CollectGarbage", handle: opCollectGarbage},
	21: {name: "QuerySubstitutablePathInfo", handle: opQuerySubstitutablePathInfo},
	22: {name: "QueryDerivationOutputs", handle: opQueryDerivationOutputs},
	23: {name: "QueryAllValidPaths", handle: opQueryAllValidPaths},
	26: {name: "QueryPathInfo", handle: opQueryPathInfo},
	27: {name: "ImportPaths", handle: opNoArgs},
	28: {name: "QueryDerivationOutputNames", handle: opQueryDerivationOutputNames},
	29: {name: "QueryPathFromHashPart", handle: opQueryPathFromHashPart},
	30: {name: "QuerySubstitutablePathInfos", handle: opQuerySubstitutablePathInfos},
	31: {name: "QueryValidPaths", handle: opQueryValidPaths},
	32: {name: "QuerySubstitutablePaths", handle: opQuerySubstitutablePaths},
	33: {name: "QueryValidDerivers", handle: opQueryValidDerivers},
	34: {name: "OptimiseStore", handle: opOptimiseStore},
	35: {name: "VerifyStore", handle: opVerifyStore},
	36: {name: "BuildDerivation", handle: opBuildDerivation},
	37: {name: "AddSignatures", handle: opAddSignatures, flags: needsTrust,
		refusal: "you are not privileged to add signatures"},
	38: {name: "NarFromPath", handle: opNarFromPath},
	39: {name: "AddToStoreNar", handle: opAddToStoreNar},
	40: {name: "QueryMissing", handle: opQueryMissing},
	41: {name: "QueryDerivationOutputMap", handle: opQueryDerivationOutputMap},
	42: {name: "RegisterDrvOutput", handle: opRegisterDrvOutput},
	43: {name: "QueryRealisation", handle: opQueryRealisation},
	44: {name: "AddMultipleToStore", handle: opAddMultipleToStore},
	45: {name: "AddBuildLog", handle: opAddBuildLog, flags: needsTrust,
		refusal: "you are not privileged to add logs"},
	46: {name: "BuildPathsWithResults", handle: opBuildPaths},
	47: {name: "AddPermRoot", handle: opAddPermRoot, flags: needsTrust | refuseEarly,
		refusal: "you are not privileged to create perm roots"},
}

// notImplemented answers an operation whose arguments were read but which privnix cannot do yet.
func (c *conn) notImplemented() error {
	if err := c.begin(); err != nil {
		return err
	}
	return ErrNotImplemented
}

func opNoArgs(c *conn) error { return c.notImplemented() }

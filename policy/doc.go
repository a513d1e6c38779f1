// Package policy decides what a user connected to the Nix daemon may do, as pure functions of identity, settings and request.
//
// This comment is for auditors: it states every rule in prose. The code beside
// it is tables and short functions that say the same thing; the tests mirror
// nix-daemon 2.8's trust matrix.
//
// # Who may connect (Connect)
//
// The monitor reads the peer's uid and gid from the kernel (SO_PEERCRED) and
// resolves names and group memberships through NSS before asking. In order:
//
//  1. A peer whose uid or gid lies in one of privnix's own ranges
//     (privnix-frontend-uids, privnix-storeproc-uids, privnix-build-uids) is
//     refused: those ids belong to privnix's frontends, upload workers and
//     builds, and a builder must not be able to ask the daemon for more work.
//  2. A peer whose primary group (the gid of the connecting process) is the
//     build-users-group is refused, as nix-daemon does. privnix also refuses a
//     user listed as a member of that group, since such a user can be handed a
//     build.
//  3. A peer with the daemon's own uid is trusted: it owns the store anyway.
//  4. A peer matching trusted-users is trusted; otherwise one matching
//     allowed-users is allowed but untrusted; anyone else is refused with
//     nix-daemon's words: "user 'X' is not allowed to connect to the Nix daemon".
//
// An entry matches as in nix-daemon: "*" matches everyone, a name matches that
// user, and "@G" matches a user whose primary group is G or who is a member of G.
// A user without a name is matched by its decimal uid. Trusted users are
// root-equivalent: they can set any setting and import unsigned paths.
//
// ConnectionLimit caps connections per user (privnix-max-connections-per-user).
//
// # What a connection's SetOptions may change (FilterOverrides, ClampJobs)
//
// ssh-auth-sock and experimental-features are never taken from a client.
// privnix's own settings and plugin-files cannot be set by any client: they
// shape the daemon, not a connection. A trusted user's other overrides all
// apply. From an untrusted user only timeout, repeat, connect-timeout (by these
// exact names, not aliases) and `builders = ""` apply; substituters (or
// binary-caches) is reduced to the URLs the admin listed in substituters or
// trusted-substituters (URL and URL+"/" both count), with the warning
// "ignoring untrusted substituter 'URL'" for each other one; everything else is
// ignored with a warning. Unknown names are ignored silently and bad values
// with a warning, never an error. The max-jobs and cores fields that every
// SetOptions carries are applied for everyone in Nix; privnix caps them at the
// admin's values for untrusted users.
//
// # What an operation may do (CheckOp, CanImport, ImportFlags)
//
// Every worker operation is a row in one table (ops.go). Untrusted users may
// not: add signatures ("you are not privileged to add signatures"); repair
// paths with VerifyStore ("you are not privileged to repair paths") or rebuild
// them with BuildPaths, BuildPathsWithResults or BuildDerivation ("repairing is
// not allowed because you are not in 'trusted-users'"); build an
// input-addressed derivation handed over directly ("you are not privileged to
// build input-addressed derivations"); upload build logs ("you are not
// privileged to add logs"); create permanent roots; register a
// content-addressed realisation without a signature by a trusted key
// (GHSA-jm6c-h95p-6qhj). FindRoots shows them temporary and runtime roots as
// "{censored}". Nobody may collect garbage ignoring liveness ("you are not
// allowed to ignore liveness"). AddToStore's repair flag is open to everyone, as
// in Nix: the content decides the path.
//
// A path with known metadata (AddToStoreNar, AddMultipleToStore, ImportPaths)
// is added when signatures are not checked (a trusted user said
// dontCheckSigs, or sent ImportPaths), when require-sigs is false, when it is
// content-addressed and its ca really yields its path, or when it is signed by
// a key in trusted-public-keys. Otherwise: "cannot add path '…' because it
// lacks a valid signature". An untrusted user's dontCheckSigs and ultimate
// flags are ignored.
//
// # Where privnix is stricter than nix-daemon 2.8
//
// Own-range uids refused; listed members of build-users-group refused;
// privnix settings and plugin-files not settable by clients; max-jobs and
// cores capped for untrusted users; repair refused in BuildDerivation;
// unsigned RegisterDrvOutput refused; ignored overrides are reported
// with a warning (as Nix after 2.8 does) instead of only at debug level.
package policy

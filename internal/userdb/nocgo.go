//go:build !cgo || osusergo

package userdb

// privnix must resolve users and groups through the system's NSS (LDAP, SSSD,
// ...), which Go's os/user does only when built with cgo and without the
// osusergo tag. This file stops the build otherwise: build with CGO_ENABLED=1.
var _ = userdb_needs_cgo_for_NSS__build_with_CGO_ENABLED_1_and_without_osusergo

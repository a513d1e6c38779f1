// Package integration drives the real privnix binaries with the real Nix
// client (Debian's nix-bin, Nix 2.8) on private stores, as root.
package integration

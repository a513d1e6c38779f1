package monitor

import "privnix/internal/nixenv"

// Paths are the directories and files the daemon works on, read from the same
// environment variables as nix-daemon (package nixenv).
type Paths = nixenv.Paths

// PathsFromEnv reads the NIX_* variables with nix-daemon's defaults.
var PathsFromEnv = nixenv.PathsFromEnv

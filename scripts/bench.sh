#!/usr/bin/env bash
# Benchmarks privnixd against nix-daemon 2.8 on private stores (make bench,
# after make build). Results in bench/out/: results.md, results.json,
# ratios.png. Needs root (it starts both daemons and runs the clients as
# privnix-alice). Environment: BENCH_REPEAT (default 5), BENCH_LOAD_SECONDS
# (default 3), BENCH_ONLY (comma-separated groups or workload ids: connection,
# handshake, protocol, concurrency, adds, instantiate, queries, builds, gc), PROFILE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "bench: run as root (sudo make bench): it starts nix-daemon and privnixd and runs clients as privnix-alice" >&2
	exit 1
fi
scripts/setup-test-host.sh
BIN=${BIN:-$PWD/bin}
mkdir -p "$BIN" bench/out
"${GO:-go}" build -trimpath -o "$BIN"/privnix-bench ./bench/cmd/privnix-bench
exec "$BIN"/privnix-bench -bin-dir "$BIN" -out bench/out

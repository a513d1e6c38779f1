#!/usr/bin/env bash
# Runs every fuzz target in the repository for a while each (default 30s),
# one process at a time. Usage: scripts/fuzz-all.sh [DURATION]   (make fuzz)
# New inputs that fail are written to the package's testdata/fuzz/, as go
# test does; commit the ones worth keeping as seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-30s}
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
	pkg=./$(dirname "${file#./}")
	for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
		echo "== $pkg $name ($dur)"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$dur" -parallel 1 "$pkg"
	done
done

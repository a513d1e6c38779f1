#!/bin/sh
# Installs privnix's systemd units and enables socket activation in place of
# nix-daemon. Run as root after `make install`:
#   systemd/install.sh [--dry-run]
# UNITDIR (default /etc/systemd/system) and DESTDIR are honoured for packaging;
# with DESTDIR set, nothing is enabled or started.
set -eu

UNITDIR=${UNITDIR:-/etc/systemd/system}
here=$(cd "$(dirname "$0")" && pwd)
run() { echo "+ $*"; [ "${dry:-}" = 1 ] || "$@"; }
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1

run install -d -m 0755 "${DESTDIR:-}$UNITDIR"
run install -m 0644 "$here/privnix-daemon.socket" "$here/privnix-daemon.service" "${DESTDIR:-}$UNITDIR/"
if [ -n "${DESTDIR:-}" ]; then
	exit 0
fi
run systemctl daemon-reload
# nix-daemon and privnixd cannot both listen at the Nix socket.
if systemctl is-enabled --quiet nix-daemon.socket 2>/dev/null || systemctl is-active --quiet nix-daemon.service 2>/dev/null; then
	run systemctl disable --now nix-daemon.socket nix-daemon.service
fi
run systemctl enable --now privnix-daemon.socket
echo "privnix units installed; check the set-up with: privnix doctor"

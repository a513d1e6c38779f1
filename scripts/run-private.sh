#!/usr/bin/env bash
# Runs privnixd in the foreground on a private store beneath RUNDIR, creating
# what it needs, and prints how to point the Nix client at it.
# Usage: scripts/run-private.sh BIN-DIR RUNDIR   (make run does this)
set -euo pipefail
bin=${1:?bin dir}
run=${2:?run dir}
if [ "$(id -u)" -ne 0 ]; then
	echo "run-private: run as root (sudo make run): privnixd demotes its children to uids of their own" >&2
	exit 1
fi
mkdir -p "$run"/store "$run"/var/nix/daemon-socket "$run"/var/log/nix "$run"/etc
chmod 0755 "$run" "$run"/store "$run"/var "$run"/var/nix "$run"/var/nix/daemon-socket
if [ ! -f "$run"/etc/nix.conf ]; then
	cat > "$run"/etc/nix.conf <<'CONF'
# A private store for trying privnix. Every local user may connect; root is trusted.
allowed-users = *
trusted-users = root
build-users-group =
substituters =
CONF
fi
export NIX_STORE_DIR="$run/store" NIX_STATE_DIR="$run/var/nix" NIX_LOG_DIR="$run/var/log/nix" NIX_CONF_DIR="$run/etc"
export NIX_DAEMON_SOCKET_PATH="$run/var/nix/daemon-socket/socket"
cat <<EOF2
privnixd is starting on a private store. In another shell, as any user:

  export NIX_REMOTE=daemon NIX_STORE_DIR=$NIX_STORE_DIR NIX_STATE_DIR=$NIX_STATE_DIR \\
         NIX_LOG_DIR=$NIX_LOG_DIR NIX_CONF_DIR=$NIX_CONF_DIR NIX_DAEMON_SOCKET_PATH=$NIX_DAEMON_SOCKET_PATH
  nix --extra-experimental-features nix-command store ping

Stop it with Ctrl-C.
EOF2
exec "$bin"/privnixd --bin-dir "$bin"

#!/usr/bin/env bash
# Prepares a fresh Debian machine (as root) for privnix's tests:
# installs the real Nix client (Debian's nix-bin, Nix 2.8.0) and creates the
# test's own users and groups. Idempotent. It never touches nixbld users: tests use
# build users of their own so that a nix-daemon and a privnixd on one machine
# cannot kill each other's builders.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "setup-test-host: must run as root (it installs packages and creates users)" >&2
	exit 1
fi

need_pkgs=()
command -v nix-store >/dev/null 2>&1 || need_pkgs+=(nix-bin)
command -v setpriv >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd) # the unit files' tests
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need_pkgs+=(busybox-static) # a static shell for sandboxed builds' tests
if [ ${#need_pkgs[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

group() { getent group "$1" >/dev/null || groupadd --system "$1"; }
user() { # user NAME PRIMARY-GROUP [SUPPLEMENTARY]
	if ! getent passwd "$1" >/dev/null; then
		useradd --system --no-create-home --home-dir /var/empty \
			--shell /usr/sbin/nologin --gid "$2" ${3:+--groups "$3"} "$1"
	fi
}

# Clients: alice and bob may connect; carol is in no allowed group.
group privnix-test-users
group privnix-test-trusted
group privnix-test-carol
user privnix-alice privnix-test-users
user privnix-bob privnix-test-users privnix-test-trusted
user privnix-carol privnix-test-carol

# The tests' own build users: group privnix-test-bld, members pnxbld1..8.
group privnix-test-bld
for i in $(seq 1 8); do
	user "pnxbld$i" privnix-test-bld
	usermod -a -G privnix-test-bld "pnxbld$i"
done
echo "setup-test-host: nix $(nix-store --version | awk '{print $3}'), test users ready"

#!/usr/bin/env bash
# Install what the store benchmark needs on Debian 12 (as root): etcd, the peer AEP is compared
# with, its client, and the Go toolchain plus etcd's Go sources from which
# bench/etcd-benchmark-build compiles etcd's own load generator; dpkg-dev unpacks Debian's
# etcd source package.
# Idempotent: packages already present are left as they are, and apt is not run at all then.
set -euo pipefail

PKGS=(etcd-server etcd-client golang-go golang-etcd-server-dev dpkg-dev)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup-bench: must run as root to install: ${missing[*]}" >&2
		exit 1
	fi
	echo "setup-bench: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -o DPkg::Lock::Timeout=600 -qq
	apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
fi

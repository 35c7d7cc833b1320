#!/usr/bin/env bash
# Install everything AEP's build and tests need on Debian 12 (as root).
# Idempotent: packages already present are left as they are.
set -euo pipefail

PKGS=(
	build-essential cmake pkg-config git ca-certificates
	clang clang-format clang-tidy
	libraft-dev libuv1-dev libmsgpack-dev liblz4-dev libssl-dev openssl
	libyaml-dev libjansson-dev libmicrohttpd-dev libcmocka-dev libbsd-dev uthash-dev
	python3 python3-msgpack python3-yaml
	iproute2 procps psmisc curl
	crun runc busybox-static libarchive-dev util-linux
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -o DPkg::Lock::Timeout=600 -qq
	apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
fi

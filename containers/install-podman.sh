#!/usr/bin/env bash
# Makes podman usable for the container targets: installs podman, runc and mmdebstrap (the last
# builds the stand-in base image, containers/standin-base.sh) with apt when they are missing and
# this is root on a Debian-like machine. Prints nothing when all is there; exits 1, silently,
# when it cannot install them (the caller says what that means for it).
set -euo pipefail
missing=()
for tool in podman runc mmdebstrap; do
  command -v "$tool" > /dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get > /dev/null; then
  exit 1
fi
echo "containers/install-podman.sh: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# The lock timeout: another apt may be running (waits instead of failing).
apt-get -o DPkg::Lock::Timeout=900 update -qq
apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends podman runc mmdebstrap ca-certificates > /dev/null

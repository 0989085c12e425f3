#!/usr/bin/env bash
# Prints the container engine the container targets use: podman if it runs here, else docker if
# its daemon answers. With neither, installs podman (containers/install-podman.sh) where it can;
# otherwise prints one line saying so on stderr and exits 1.
# podman reads the project's settings (containers/podman/containers.conf) through CONTAINERS_CONF,
# which the caller exports.
set -euo pipefail
runs() { command -v "$1" > /dev/null && "$1" info > /dev/null 2>&1; }
if runs podman; then echo podman; exit 0; fi
if runs docker; then echo docker; exit 0; fi
if "$(dirname "$0")/install-podman.sh" && runs podman; then echo podman; exit 0; fi
echo "no container engine: neither podman nor docker runs here, and podman cannot be installed (needs root and apt-get)" >&2
exit 1

#!/usr/bin/env bash
# Builds a STAND-IN for the base image, for machines that cannot pull it (no registry reachable):
# a Debian bookworm root file system (mmdebstrap) with Python in a virtual environment at
# /opt/conda, first on PATH, as in the official PyTorch images, and torch/torchvision at the
# versions pyproject.toml pins from the package index (the CUDA build, as in the official image).
# It is tagged with the official name, so the Dockerfile builds on it unchanged, and labelled
# samedge.stand-in-base=true, a label every image built on it inherits.
# Usage: containers/standin-base.sh ENGINE BASE_IMAGE   (ENGINE: podman or docker)
set -euo pipefail
engine=$1 base=$2
cd "$(dirname "$0")/.."
pin() { sed -n "s/^ *\"$1==\([^\"]*\)\".*/\1/p" pyproject.toml; }
torch=$(pin torch) torchvision=$(pin torchvision)
rootfs=samedge-standin-rootfs:bookworm
work=samedge-standin-build-$$
echo "containers/standin-base.sh: building a STAND-IN for $base: Debian bookworm + torch==$torch torchvision==$torchvision from the package index" >&2

mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm - \
  | "$engine" import --change 'CMD ["/bin/bash"]' - "$rootfs" > /dev/null

# pip reaches the index through the host's pip configuration and CA bundle where it has them.
mounts=()
for file in /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do
  [ -f "$file" ] && mounts+=(-v "$file:$file:ro")
done
trap '"$engine" rm -f "$work" > /dev/null 2>&1 || true' EXIT  # also after a failed install
"$engine" run --name "$work" --network host "${mounts[@]}" "$rootfs" sh -ec "
  python3 -m venv /opt/conda
  PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off \
    /opt/conda/bin/pip install --quiet torch==$torch torchvision==$torchvision"
"$engine" commit \
  --change 'ENV PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "LABEL samedge.stand-in-base=true" --change "LABEL samedge.stand-in-for=$base" \
  --change 'LABEL org.opencontainers.image.description="STAND-IN base: Debian bookworm + torch from the package index, not the official PyTorch image"' \
  "$work" "$base" > /dev/null
"$engine" rm "$work" > /dev/null

#!/usr/bin/env bash
# `make container` without Apptainer: builds the image of containers/Dockerfile with podman or
# docker (containers/engine.sh picks), tagged samedge:VERSION, and says which engine it used.
# BASE_IMAGE (environment) overrides the Dockerfile's default base. When the base cannot be
# pulled, --stand-in builds a labelled stand-in for it (containers/standin-base.sh) instead of
# failing. Prints the engine and the image's tag as its last line: "ENGINE TAG".
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=$PWD/containers/podman/containers.conf
stand_in=${1:-}
engine=$(containers/engine.sh)
base=${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' containers/Dockerfile)}
tag=samedge:$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
echo "make container: $engine builds $tag from containers/Dockerfile on $base" >&2

# A name without a registry is Docker Hub's (podman resolves no short names by itself).
case ${base%%/*} in
  *.*|*:*|localhost) registry_ref=$base ;;
  *) registry_ref=docker.io/$base ;;
esac
pull() { "$engine" pull -q "$registry_ref" > /dev/null 2>&1 && "$engine" tag "$registry_ref" "$base"; }
if ! "$engine" image inspect "$base" > /dev/null 2>&1 && ! pull; then
  if [ "$stand_in" != --stand-in ]; then
    echo "make container: cannot pull $base; \`make container-check\` builds a labelled stand-in for it" >&2
    exit 1
  fi
  echo "make container: cannot pull $base" >&2
  containers/standin-base.sh "$engine" "$base"
fi
if [ "$("$engine" image inspect --format '{{index .Config.Labels "samedge.stand-in-base"}}' "$base")" = true ]; then
  echo "make container: $base here is a STAND-IN (containers/standin-base.sh), not the official image" >&2
fi

# podman: pip reaches the index through the host's pip configuration and CA bundle where it has
# them (docker build cannot mount files; it uses the network as it is).
mounts=()
if [ "$engine" = podman ]; then
  for file in /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do
    [ -f "$file" ] && mounts+=(-v "$file:$file:ro")
  done
fi
"$engine" build --network host "${mounts[@]}" --build-arg "BASE_IMAGE=$base" \
  -f containers/Dockerfile -t "$tag" . >&2
echo "$engine $tag"

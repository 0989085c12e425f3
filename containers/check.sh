#!/usr/bin/env bash
# `make container-check`: builds the image (containers/build.sh, with a labelled stand-in base
# when the official one cannot be pulled), checks its entry point and self-test, runs the smoke
# DAG twice in fresh copies of the repository, on the host and with every job in the image
# (Snakemake --use-singularity through containers/apptainer-on-engine), and compares every result
# file (containers/compare_results.py, timing aside). Host Python settings that would stop every
# job are set on purpose for the container run: they must change nothing. Every output must belong
# to the caller. One line per difference; exit 1 on any. Without podman or docker: one line, exit 0.
# The workspaces are left under $TMPDIR for inspection only when the check fails.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=$repo/.venv/bin/python  # the host run's samedge and Snakemake (make install)
export CONTAINERS_CONF=$repo/containers/podman/containers.conf
say() { echo "make container-check: $*" >&2; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/samedge-container-check.XXXXXX")
failed=1
trap '[ $failed -eq 0 ] && rm -rf "$work"' EXIT

if ! "$repo/containers/engine.sh" > /dev/null 2> "$work/engine.log"; then
  say "skipped: $(tail -n 1 "$work/engine.log")"
  failed=0
  exit 0
fi
start=$(date +%s)
build=$("$repo/containers/build.sh" --stand-in) || { say "the image did not build"; exit 1; }
read -r engine image <<< "$(tail -n 1 <<< "$build")"
say "image $image built by $engine in $(elapsed "$start") (load average $(cut -d' ' -f1-3 /proc/loadavg))"

# Entry point and self-test, as a user calls them; host networking, as Apptainer and the shim run
# jobs (a bridge network would also need iptables, which a bare PATH without sbin does not find).
"$engine" run --rm --network host "$image" samedge-self-test >&2 || { say "the image's self-test failed"; exit 1; }
"$engine" run --rm --network host "$image" train --help > /dev/null || { say "\`$engine run $image train --help\` failed"; exit 1; }

workspace() {  # a fresh copy of the repository's files (tracked, and untracked but not ignored)
  mkdir -p "$1"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
     | xargs -0 cp --parents --no-dereference -t "$1" 2> /dev/null || true)
}
smoke() {  # the smoke DAG in workspace $1, with the environment and Snakemake options after it
  local ws=$1; shift
  (cd "$ws" && env "$@" --config profile=smoke > "$ws/snakemake.log" 2>&1) \
    || { say "the smoke DAG failed in $ws (log: $ws/snakemake.log)"; exit 1; }
}
snakemake=("$repo/.venv/bin/snakemake" --cores all)
mirror=()
[ -n "${SAMEDGE_DATA_MIRROR:-}" ] && mirror=("SAMEDGE_DATA_MIRROR=$(cd "$SAMEDGE_DATA_MIRROR" && pwd)")

workspace "$work/host"
start=$(date +%s)
smoke "$work/host" -u PYTHONPATH -u VIRTUAL_ENV "${mirror[@]}" "${snakemake[@]}"
say "smoke DAG on the host: $(elapsed "$start")"

ws=$work/container
workspace "$ws"
echo "stands for the $engine image $image (make container-check)" > "$ws/containers/samedge.sif"
# Host Python settings, set on purpose: a PYTHONPATH whose sitecustomize stops every Python that
# starts in a container (APPTAINER_CONTAINER set) and a VIRTUAL_ENV. They must change nothing.
mkdir -p "$ws/.host-python/venv"
cat > "$ws/.host-python/sitecustomize.py" << 'PY'
import os, sys
if os.environ.get("APPTAINER_CONTAINER"):
    sys.stderr.write("the host PYTHONPATH reached the container\n")
    os._exit(97)
PY
leak=(PYTHONPATH="$ws/.host-python" VIRTUAL_ENV="$ws/.host-python/venv")
# The probe bites where nothing drops the setting (the entry point bypassed) ...
bitten=0
"$engine" run --rm --network host --entrypoint python3 -v "$ws:$ws" -e APPTAINER_CONTAINER=1 -e "${leak[0]}" \
  "$image" -c pass 2> /dev/null || bitten=$?
[ "$bitten" -eq 97 ] || { say "the PYTHONPATH probe did not stop Python in the image (exit $bitten)"; exit 1; }
# ... and the image drops it, and VIRTUAL_ENV, for a job as Snakemake starts it.
shim=("PATH=$repo/containers/apptainer-on-engine:$PATH" SAMEDGE_ENGINE="$engine" SAMEDGE_ENGINE_IMAGE="$image")
seen=$(cd "$ws" && env "${shim[@]}" "${leak[@]}" apptainer exec --home "$ws" containers/samedge.sif \
  python3 -c 'import os; print(os.environ.get("PYTHONPATH"), os.environ.get("VIRTUAL_ENV"))')
[ "$seen" = "None None" ] || { say "the host's PYTHONPATH/VIRTUAL_ENV reached the container: $seen"; exit 1; }
touch "$work/before-container-run"
start=$(date +%s)
smoke "$ws" "${shim[@]}" "${leak[@]}" "${mirror[@]}" "${snakemake[@]}" --use-singularity
say "smoke DAG with every job in the image: $(elapsed "$start") (load average $(cut -d' ' -f1-3 /proc/loadavg))"

differences=$(mktemp "$work/differences.XXXXXX")
compared=0
"$python" "$repo/containers/compare_results.py" "$work/host" "$ws" >> "$differences" || compared=$?
[ "$compared" -le 1 ] || { say "containers/compare_results.py failed"; exit 1; }
# Outputs belong to the caller (the container writes as the caller's user).
find "$ws" -newer "$work/before-container-run" ! -user "$(id -u)" -printf '%P: owned by %u, not by the caller\n' >> "$differences"
if [ -s "$differences" ]; then
  cat "$differences"
  say "$(wc -l < "$differences") difference(s) between the host and the container; workspaces kept in $work"
  exit 1
fi
say "every result file of the smoke DAG is the same on the host and in the image"
failed=0

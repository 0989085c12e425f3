#!/usr/bin/env bash
# The GPU numbers and checks in one command, on a machine with a CUDA GPU and no internet:
#   SAMEDGE_DATA_MIRROR=/path/to/mirror bash benchmarks/gpu_check.sh [WHEELS_DIR]
# 0. refuses (one line, exit 2, before any work) unless the DAG starts fresh: runs already in
#    results/<profile>/runs or checkpoints/<profile> would be skipped or resumed, and the timed DAG and its packing
#    ratio would measure nothing; run it in a fresh clone (or move those folders away);
# 1. a venv (.gpu-venv) over the Python that holds the machine's own torch (a venv of its own
#    included), plus whatever of snakemake, jsonschema, torchvision and datasets is missing,
#    installed offline from WHEELS_DIR (default wheels/), and samedge itself (editable, no deps);
# 2. fetches and prepares the three data sets from the mirror (timed apart);
# 3. runs the paper-quick DAG from prepared data (training, tables, 16 figures, report), timed;
# 4. runs benchmarks/gpu.py and reads the paper's claims off results/<profile>/edge_agreement.csv;
# 5. a resume drill: one CIFAR-10 job of the DAG again, SIGKILLed after its first checkpoint, then
#    rerun: its metrics against the DAG's run of it;
# 6. a rerun check: one MNIST and one CIFAR-10 job twice more, side by side: metrics bit-identical
#    to each other and to the DAG's run (gpu.py --drill-runs names the jobs);
# 7. writes everything to benchmarks/results-gpu.md (the drills' runs and logs: benchmarks/out/gpu-check-*/).
# Make WHEELS_DIR on a machine with internet, for the GPU machine's Python and its torch version:
#   pip download --dest wheels --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       "snakemake>=9.27,<10" "jsonschema>=4.20" "datasets>=3.0" "torchvision==0.26.*"   # torchvision: the one matching torch
# and carry the folder along (default: wheels/ in the repository, git-ignored). Optional: GPU_CHECK_MPS=1
# runs the DAG under CUDA MPS (README). GPU_CHECK_DEVICE=cpu rehearses the whole script on the CPU at
# the smoke profile (GPU_CHECK_PROFILE), writing to its drill folder: its numbers say nothing of a GPU.
set -euo pipefail
WHEELS=$(realpath -m "${1:-$(dirname "$0")/../wheels}")
cd "$(dirname "$0")/.."
fail() { echo "benchmarks/gpu_check.sh: $*" >&2; exit 2; }
PYTHON=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
case "$DEVICE" in
    cuda) PROFILE=${GPU_CHECK_PROFILE:-paper-quick} ;;
    cpu) PROFILE=${GPU_CHECK_PROFILE:-smoke} ;;
    *) fail "GPU_CHECK_DEVICE=$DEVICE: expected cuda (the default) or cpu (a rehearsal)" ;;
esac
[ -d "${SAMEDGE_DATA_MIRROR:-}" ] || fail "set SAMEDGE_DATA_MIRROR to the offline data mirror (a folder)"
export SAMEDGE_DATA_MIRROR
if [ "$DEVICE" = cuda ]; then
    "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
        || fail "no CUDA device visible to $PYTHON (torch.cuda.is_available() is false); nothing run"
fi
RESULTS=results/$PROFILE  # the profile's own folder (samedge.layout)
done_runs=$(find "$RESULTS/runs" "checkpoints/$PROFILE" -name run.json -o -name checkpoint.pt 2>/dev/null | head -3 | tr '\n' ' ' || true)
[ -z "$done_runs" ] || fail "not a fresh DAG: $done_runs... exist, so the timed DAG would skip or resume" \
    "those runs; run it in a fresh clone (or move results/ and checkpoints/ away); nothing run"
VENV=.gpu-venv
DRILL=benchmarks/out/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)
[ "$DEVICE" = cuda ] && OUT=${GPU_CHECK_OUT:-benchmarks/results-gpu.md} || OUT=${GPU_CHECK_OUT:-$DRILL/results-cpu-rehearsal.md}
CONFIG=(--config profile="$PROFILE" device="$DEVICE")  # last: --config takes every word after it
mkdir -p "$DRILL" logs

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --without-pip --system-site-packages "$VENV"
    # The machine's torch may live in a venv of its own (then --system-site-packages misses it):
    # add that Python's site folders, their .pth files included, after this venv's own. Its pip
    # and setuptools serve this venv too (a venv's own bundled setuptools may be too old to build).
    "$PYTHON" -c 'import site; print("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in site.getsitepackages()))' \
        > "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/python-base.pth"
fi
missing=$("$VENV/bin/python" -c '
import importlib.util as u
need = {"snakemake": "snakemake>=9.27,<10", "jsonschema": "jsonschema>=4.20", "torchvision": "torchvision",
        "datasets": "datasets>=3.0"}
print(" ".join(repr(spec) for module, spec in need.items() if u.find_spec(module) is None))')
if [ -n "$missing" ]; then
    eval "set -- $missing"
    "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEELS" "$@"
fi
# samedge from this checkout, with its metadata (the data manifests record its version) and its
# `samedge` command in $VENV/bin, which the jobs run (first on their PATH).
"$VENV/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e . > "$DRILL/install.log" 2>&1 \
    || fail "installing samedge into $VENV failed: see $DRILL/install.log"
export PATH="$PWD/$VENV/bin:$PATH"

if [ "${GPU_CHECK_MPS:-0}" = 1 ]; then
    nvidia-cuda-mps-control -d
    trap 'echo quit | nvidia-cuda-mps-control' EXIT
fi
snakemake() {  # this venv's python, so the Snakefile imports this checkout's samedge
    "$VENV/bin/python" -m snakemake "$@"
}
t0=$SECONDS
snakemake --cores all data/prepared/{mnist,cifar10,shakespeare} "${CONFIG[@]}" > logs/gpu-check-data.log 2>&1 \
    || fail "fetching the data failed: see logs/gpu-check-data.log"
data_s=$((SECONDS - t0))
t0=$SECONDS
{ snakemake --cores all "${CONFIG[@]}" && snakemake --report "$RESULTS/report.html" "${CONFIG[@]}"; } \
    > logs/gpu-check-dag.log 2>&1 || fail "the $PROFILE DAG failed: see logs/gpu-check-dag.log"
dag_s=$((SECONDS - t0))
if [ "$DEVICE" = cuda ]; then
    "$VENV/bin/python" benchmarks/gpu.py --data-dir data --profile "$PROFILE" --out "$DRILL/steps.md" >/dev/null
else
    echo "(a CPU rehearsal: benchmarks/gpu.py measures on CUDA only)" > "$DRILL/steps.md"
fi

job() {  # job NAME TASK LR RHO: the DAG's command for that run (train.smk), into the drill folder
    exec samedge train --task "$2" --lr "$3" --rho "$4" --profile "$PROFILE" --params params.yaml \
        --data-dir data --device "$DEVICE" --threads 1 --out "$DRILL/$1" --checkpoint-dir "$DRILL/$1.ckpt" \
        >> "$DRILL/$1.log" 2>&1
}
mapfile -t drills < <("$VENV/bin/python" benchmarks/gpu.py --drill-runs "$PROFILE")
# Resume drill: the CIFAR-10 job, SIGKILLed once its first checkpoint is on disk, then the same command.
read -r task lr rho run <<< "${drills[1]}"
(job resumed "$task" "$lr" "$rho") &
pid=$!
until [ -f "$DRILL/resumed.ckpt/checkpoint.pt" ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
kill -KILL "$pid" 2>/dev/null && killed="SIGKILLed after its first checkpoint" || killed="ended before it could be killed"
{ wait "$pid"; } 2>/dev/null || true  # its "Killed" notice is expected
(job resumed "$task" "$lr" "$rho") || fail "the resumed drill job failed: see $DRILL/resumed.log"
resume_row=$("$VENV/bin/python" benchmarks/gpu.py --same-metrics "$task $run: DAG run, killed + rerun" \
    "$RESULTS/runs/$task/$run" "$DRILL/resumed")
# Rerun check: each drill job twice more, all four side by side (as the DAG packs them).
pids=()
for line in "${drills[@]}"; do
    read -r task lr rho run <<< "$line"
    for copy in a b; do (job "rerun-$copy-$task" "$task" "$lr" "$rho") & pids+=($!); done
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a rerun drill job failed: see $DRILL/rerun-*.log"; done
rerun_rows=()
for line in "${drills[@]}"; do
    read -r task lr rho run <<< "$line"
    rerun_rows+=("$("$VENV/bin/python" benchmarks/gpu.py --same-metrics "$task $run: DAG run, rerun a, rerun b" \
        "$RESULTS/runs/$task/$run" "$DRILL/rerun-a-$task" "$DRILL/rerun-b-$task")")
done
# configure_device lets an op without a deterministic CUDA kernel warn rather than stop the run.
nondeterministic=$(grep -rhoE "[A-Za-z_0-9]+ does not have a deterministic implementation" logs/train "$DRILL" 2>/dev/null \
    | sort | uniq -c | sed 's/^ *//' | paste -sd ';' - || true)
{
    echo "# GPU check: the $PROFILE profile, the per-step benchmark, resume and rerun drills"
    echo
    gpu=$( [ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1 || echo "CPU rehearsal")
    echo "$(date -u +%FT%TZ), $gpu, torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')," \
         "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), MPS ${GPU_CHECK_MPS:-0}"
    echo
    echo "- fetch + prepare the three data sets from the mirror: ${data_s} s"
    echo "- $PROFILE DAG from prepared data (training, tables, 16 figures, report), every run trained afresh: ${dag_s} s (target <= 600)"
    echo
    echo "## The paper's claims ($RESULTS/edge_agreement.csv)"
    echo
    "$VENV/bin/python" benchmarks/gpu.py --claims "$RESULTS/edge_agreement.csv"
    echo
    echo "## Training jobs sharing the GPU"
    echo
    "$VENV/bin/python" benchmarks/gpu.py --packing "$RESULTS" "$dag_s"
    echo
    echo "## Steps against their floor (benchmarks/gpu.py)"
    echo
    cat "$DRILL/steps.md"
    echo
    echo "## Resume and rerun (metrics.csv without its timing columns; runs and logs in $DRILL)"
    echo
    echo "The resume drill's job was $killed."
    echo
    echo "| job and runs compared | runs | resumes | metrics |"
    echo "|---|---|---|---|"
    echo "$resume_row"
    printf '%s\n' "${rerun_rows[@]}"
    echo
    echo "Ops without a deterministic kernel (warnings in the training logs): ${nondeterministic:-none}"
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"

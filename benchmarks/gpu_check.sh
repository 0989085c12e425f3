#!/usr/bin/env bash
# The GPU numbers in one command, on a machine with a CUDA GPU and no internet:
#   SAMEDGE_DATA_MIRROR=/path/to/mirror bash benchmarks/gpu_check.sh [WHEELS_DIR]
# 1. a venv (.gpu-venv) that sees the machine's own torch/numpy/pandas/seaborn, plus whatever of
#    snakemake, jsonschema and torchvision is missing, installed offline from WHEELS_DIR (default
#    wheels/); samedge itself runs from src/ (no pins, no build);
# 2. fetches and prepares the three data sets from the mirror (timed apart);
# 3. runs the paper-quick DAG from prepared data (training, tables, 16 figures, report), timed;
# 4. runs benchmarks/gpu.py and reads the paper's claims off results/paper-quick/edge_agreement.csv;
# 5. writes everything to benchmarks/results-gpu.md.
# Make WHEELS_DIR on a machine with internet, for the GPU machine's Python and its torch version:
#   pip download --dest wheels --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
#       "snakemake>=9.27,<10" "jsonschema>=4.20" "torchvision==0.26.*"   # torchvision: the one matching torch
# and carry the folder along (default: wheels/ in the repository, git-ignored). Optional: GPU_CHECK_MPS=1 runs the DAG under CUDA MPS (README).
set -euo pipefail
WHEELS=$(realpath -m "${1:-$(dirname "$0")/../wheels}")
cd "$(dirname "$0")/.."
fail() { echo "benchmarks/gpu_check.sh: $*" >&2; exit 2; }
[ -d "${SAMEDGE_DATA_MIRROR:-}" ] || fail "set SAMEDGE_DATA_MIRROR to the offline data mirror (a folder)"
export SAMEDGE_DATA_MIRROR
"${PYTHON:-python3}" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
    || fail "no CUDA device visible to ${PYTHON:-python3} (torch.cuda.is_available() is false); nothing run"
VENV=.gpu-venv
OUT=benchmarks/results-gpu.md
CONFIG=(--config profile=paper-quick device=cuda)
RESULTS=results/paper-quick  # the profile's own folder (samedge.layout)

[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv --system-site-packages "$VENV"
missing=$("$VENV/bin/python" -c '
import importlib.util as u
need = {"snakemake": "snakemake>=9.27,<10", "jsonschema": "jsonschema>=4.20", "torchvision": "torchvision"}
print(" ".join(repr(spec) for module, spec in need.items() if u.find_spec(module) is None))')
if [ -n "$missing" ]; then
    eval "set -- $missing"
    "$VENV/bin/pip" install --no-index --find-links "$WHEELS" "$@"
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/src" > "$site/samedge-src.pth"
printf '#!/bin/sh\nexec "%s/%s/bin/python" -m samedge.cli "$@"\n' "$PWD" "$VENV" > "$VENV/bin/samedge"
chmod +x "$VENV/bin/samedge"
export PATH="$PWD/$VENV/bin:$PATH"
mkdir -p logs

if [ "${GPU_CHECK_MPS:-0}" = 1 ]; then
    nvidia-cuda-mps-control -d
    trap 'echo quit | nvidia-cuda-mps-control' EXIT
fi
snakemake() {  # this venv's python, so the Snakefile imports samedge from src/ and jobs find the shim
    "$VENV/bin/python" -m snakemake "$@"
}
t0=$SECONDS
snakemake --cores all "${CONFIG[@]}" data/prepared/{mnist,cifar10,shakespeare} > logs/gpu-check-data.log 2>&1 \
    || fail "fetching the data failed: see logs/gpu-check-data.log"
data_s=$((SECONDS - t0))
t0=$SECONDS
{ snakemake --cores all "${CONFIG[@]}" && snakemake --report "$RESULTS/report.html" "${CONFIG[@]}"; } \
    > logs/gpu-check-dag.log 2>&1 || fail "the paper-quick DAG failed: see logs/gpu-check-dag.log"
dag_s=$((SECONDS - t0))
"$VENV/bin/python" benchmarks/gpu.py --data-dir data --out benchmarks/.gpu-table.md >/dev/null
{
    echo "# GPU check: the paper-quick profile and the per-step benchmark"
    echo
    echo "$(date -u +%FT%TZ), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)," \
         "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), MPS ${GPU_CHECK_MPS:-0}"
    echo
    echo "- fetch + prepare the three data sets from the mirror: ${data_s} s"
    echo "- paper-quick DAG from prepared data (training, tables, 16 figures, report): ${dag_s} s (target <= 600)"
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
    cat benchmarks/.gpu-table.md
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
rm -f benchmarks/.gpu-table.md
cat "$OUT"

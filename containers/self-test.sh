#!/bin/sh
# The image's self-test, the same in both recipes: installed as /usr/local/bin/samedge-self-test,
# run at the end of each build, by `apptainer test IMAGE` and by `docker run IMAGE samedge-self-test`.
# Fails unless the image's torch is the version samedge pins (pyproject.toml) and samedge runs.
set -eu
python3 - <<'PY'
import re
from importlib.metadata import requires

import torch

(pin,) = [r.split("==")[1] for r in requires("samedge") if re.match(r"torch\s*==", r)]
assert torch.__version__.split("+")[0] == pin, f"torch {torch.__version__}, samedge pins {pin}"
print("torch", torch.__version__, "CUDA available:", torch.cuda.is_available())
PY
samedge --help > /dev/null
echo "samedge --help: ok"

#!/usr/bin/env bash
# Every GPU check of docs/performance.md in one prepared run (about 6–11 minutes on an H100/H200, each step bounded):
# the accelerator-vs-CPU correctness tests, then the GPU benchmark rows. Logs go to $OUT (default /tmp/gpu-checks),
# one file per step, plus summary.txt with each step's exit status.
#
# On a machine whose Python lacks some of zeroloss's dependencies (the lab's device machine has torch, pandas,
# pyarrow, typer, numba, ... but not pydantic), carry them as wheels in .whl/ (ignored by git):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl pydantic pydantic_core annotated-types typing-inspection
#
# and the script installs them into /tmp/site first. zeroloss itself runs from src/ (no install needed).
#
#   bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-checks}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PWD/src:$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
: >"$OUT/summary.txt"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, record the exit status
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local status=$?
  echo "$name: exit $status after $((SECONDS - t0)) s (limit $limit s): $*" | tee -a "$OUT/summary.txt"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; "$PYTHON" -c \
  "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"; } \
  >>"$OUT/summary.txt" 2>&1
step meta_device_tests 120 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_devices_meta.py
step accelerator_tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_accelerator.py
step gram_h100_row 90 "$PYTHON" -m benchmarks.bench_gram --device cuda --width 2048 --depth 4 --dtype float32
step gram_n8192 90 "$PYTHON" -m benchmarks.bench_gram --device cuda --n 8192 --width 4096 --depth 4 \
  --dtype float32 --no-peer
step train_gd_64 120 "$PYTHON" -m benchmarks.bench_train_gd --lr 0.01 --device cuda --members 64 --repeats 3
step limit_n20000 150 "$PYTHON" -m benchmarks.bench_limit_kernel --device cuda --n 20000 --no-peer --repeats 1
step entk_resnet18_n1000 300 "$PYTHON" -m benchmarks.bench_entk --case resnet18 --device cuda --n 1000 --no-peer \
  --repeats 1 --max-bytes 120
cat "$OUT/summary.txt"

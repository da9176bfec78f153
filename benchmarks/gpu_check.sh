#!/usr/bin/env bash
# The whole GPU benchmark in one script (issue #12): matmul peaks, the throughput suite
# (default conv model depth 1/3 eager, bf16, channels-last, batch 256, ViT, experiment=gpu_scale,
# bare ViT-B ceilings, CUDA graphs, torch.compile) and the default 300-step job end to end.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [WHEEL_DIR]
#
# Results: OUT_DIR/throughput.json, throughput.log, default_job.log, env.txt (default OUT_DIR:
# $OUT, else benchmarks/out). WHEEL_DIR (optional) holds wheels of packages missing on the machine
# (hydra-core, omegaconf, antlr4-python3-runtime); they are installed into /tmp/site. MLflow is not
# needed: the training run uses tracking.enabled=false.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-benchmarks/out}}"
WHEELS="${2:-}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
if [ -n "$WHEELS" ] && [ -d "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HJEPA_CACHE="${HJEPA_CACHE:-/tmp/hjepa-cache}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  "$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  "$PY" -c "import sys, hjepa.train; print('hjepa.train imports without mlflow:', 'mlflow' not in sys.modules)"
} 2>&1 | tee "$OUT_DIR/env.txt"

# 1. throughput suite (JSON rewritten after every case, so a timeout keeps what was measured)
timeout "${THROUGHPUT_TIMEOUT:-330}" "$PY" benchmarks/throughput.py --suite gpu --reps "${REPS:-15}" --rounds 3 \
  --json "$OUT_DIR/throughput.json" ${ONLY:+--only "$ONLY"} 2>&1 | tee "$OUT_DIR/throughput.log"

[ -n "${SKIP_JOB:-}" ] && exit 0
# 2. the default job (rooms env, depth 2, 300 steps) end to end, data generation excluded (cached first)
timeout 60 "$PY" -m hjepa.train tracking.enabled=false train.progress=false train.steps=1 hydra.run.dir=/tmp/hjepa-warm \
  > /dev/null 2>&1
start=$(date +%s.%N)
timeout "${JOB_TIMEOUT:-120}" "$PY" -m hjepa.train tracking.enabled=false train.progress=false \
  hydra.run.dir=/tmp/hjepa-default 2>&1 | tee "$OUT_DIR/default_job.log"
end=$(date +%s.%N)
echo "default 300-step job: $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}') s wall (incl. start-up and 3 evaluations)" | tee -a "$OUT_DIR/default_job.log"

#!/usr/bin/env bash
# GPU check: the env, training, VQC, scaling and joint-optimum benchmarks at GPU-sized batches, in < 6 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh            # JSON (+ PNG) under $OUT when set, else benchmarks/results/gpu/
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
#   GPU_CHECK_QUICK=1 bash benchmarks/gpu_check.sh   # CPU-sized smoke test of this script (a few minutes)
#
# Needs a Python with meqc_jax's dependencies and a GPU-enabled jax (e.g. pip install -U "jax[cuda12]");
# torch is not needed (the torch columns of bench_train / bench_vqc are skipped). Every stage has its own
# time limit, so one slow stage cannot eat the others' time; a stage that fails or times out is recorded
# in summary.json and the script goes on (bench_scaling writes its JSON after every point, so a stage
# stopped by its limit keeps the points it finished). Limits sum to 330 s. Runs from any folder.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
DEST="${OUT:-benchmarks/results/gpu}"
mkdir -p "$DEST"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
START=$(date +%s)
STAGES=()

stage() {  # stage NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee "$DEST/$name.log"
  local rc=${PIPESTATUS[0]}
  local dt=$(( $(date +%s) - t0 ))
  echo "== $name: exit $rc after ${dt}s"
  STAGES+=("{\"stage\": \"$name\", \"exit\": $rc, \"seconds\": $dt}")
}

stage device 30 "$PY" - "$DEST/device.json" <<'EOF'
import json, os, platform, subprocess, sys, time
import jax
from meqc_jax.io import atomic_write_json
devs = jax.devices()
info = {"backend": jax.default_backend(), "device_count": len(devs), "devices": [str(d) for d in devs],
        "device_kind": devs[0].device_kind, "jax_version": jax.__version__, "python": sys.version.split()[0],
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                         "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
except Exception as e:  # not an NVIDIA machine, or no nvidia-smi
    info["nvidia_smi"] = repr(e)
atomic_write_json(sys.argv[1], info)
print(json.dumps(info, indent=1))
if info["backend"] == "cpu":
    print("WARNING: jax sees no accelerator; the figures below are CPU figures")
EOF

if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  SCALING=(--quick --train-envs 4,16); VQC_BATCHES=(1024 4096); TRAIN=(--envs 8); LIMIT=1200
else
  # env step, GPU-sized: N up to 2^20 instances at U = E = 10; U = E up to 100 at N = 16384;
  # training at 256 and 4096 environments (50 slots per epoch)
  SCALING=(--max-n 1048576 --ue-envs 16384 --train-envs 256,4096); VQC_BATCHES=(4096 65536); TRAIN=(--envs 1024)
  LIMIT=0
fi
lim() { [ "$LIMIT" -gt 0 ] && echo "$LIMIT" || echo "$1"; }  # the quick CPU run gets generous limits

stage scaling "$(lim 150)" "$PY" benchmarks/bench_scaling.py "${SCALING[@]}" --out "$DEST/scaling.json"
# the VQC circuit, forward + backward: at the CPU figure's batch and a GPU-sized one
for B in "${VQC_BATCHES[@]}"; do
  stage "vqc_$B" "$(lim 25)" "$PY" benchmarks/bench_vqc.py --quick --no-torch --batch "$B" --out "$DEST/vqc_$B.json"
done
# full PPO (500-slot epochs), jax only
stage train "$(lim 65)" "$PY" benchmarks/bench_train.py --no-torch "${TRAIN[@]}" --epochs 1 --repeats 2 \
  --out "$DEST/train.json"

# the exact optimum under contention: joint modes per second of the enumeration, slots per second of the DP
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then JOINT=(--slots 32 --batch 8); else JOINT=(--slots 4096 --batch 512); fi
stage joint "$(lim 40)" "$PY" benchmarks/bench_joint.py "${JOINT[@]}" --repeats 2 --out "$DEST/joint.json"

TOTAL=$(( $(date +%s) - START ))
{
  echo "{\"total_seconds\": $TOTAL, \"stages\": ["
  (IFS=,; echo "${STAGES[*]}")
  echo "]}"
} > "$DEST/summary.json"
echo "gpu_check: ${TOTAL}s in all; results in $DEST"

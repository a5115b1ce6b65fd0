#!/usr/bin/env bash
# The accelerator check: env step, PPO training, the VQC circuit, the exact optimum under contention, a sweep
# and the quick reproduction, at GPU-sized batches, on whatever backend JAX sees; one JSON with every figure.
#
#   bash benchmarks/gpu_check.sh            # GPU sizes (about six minutes on one GPU)
#   bash benchmarks/gpu_check.sh --smoke    # tiny sizes on any backend (under two minutes on a 2-core CPU);
#                                           # the test suite runs it, so the script cannot rot
#   OUT=dir PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
#
# Results: $OUT (default benchmarks/results/gpu/, smoke: benchmarks/results/gpu-smoke/): each stage's JSON and
# log, and gpu_check.json: the device, every stage's exit status and seconds, and the figures
# (docs/performance.md, "On a GPU"). Needs a Python with meqc_jax installed and, on a GPU, a GPU jaxlib
# (pip install -e '.[cuda12]'); torch is not needed. Every stage has its own time limit, so one slow stage
# cannot eat the others' time; the script goes on past a stage that fails or runs out of time, and exits 1
# at the end if any did (0 only when every stage exited 0). Runs from any folder.
set -uo pipefail
SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown option '$arg': allowed --smoke, --help" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if [ "$SMOKE" = 1 ]; then DEST="${OUT:-benchmarks/results/gpu-smoke}"; else DEST="${OUT:-benchmarks/results/gpu}"; fi
mkdir -p "$DEST"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
export MEQC_COMPILE_CACHE="${MEQC_COMPILE_CACHE:-off}"  # every stage pays its compiles: what a first run costs
START=$(date +%s)
STAGES=()
FAILED=0

stage() {  # stage NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$DEST/$name.log" 2>&1
  local rc=$?
  tail -n 20 "$DEST/$name.log"
  local dt=$(( $(date +%s) - t0 ))
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "== $name: TIMED OUT after ${dt}s (limit ${limit}s)";
  else echo "== $name: exit $rc after ${dt}s"; fi
  [ "$rc" -eq 0 ] || FAILED=1
  STAGES+=("{\"stage\": \"$name\", \"exit\": $rc, \"seconds\": $dt, \"limit_s\": $limit}")
}

stage device 60 "$PY" -m meqc_jax.cli info --out "$DEST/device.json"

if [ "$SMOKE" = 1 ]; then
  SCALING=(--smoke); VQC_BATCHES=(64); TRAIN=(--users 3 --servers 2 --envs 2 --slots 16 --repeats 1)
  JOINT=(--smoke --slots 4 --batch 2 --repeats 1); SWEEP=(--smoke)
  QUICK=(--only fig10 --epochs 1); L_SCALING=90; L_VQC=60; L_TRAIN=90; L_JOINT=60; L_SWEEP=90; L_QUICK=120
else
  # env step: N up to 2^20 instances at U = E = 10, U = E up to 100 at N = 16384; training at 256 and 4096
  # environments (50 slots per epoch) and a paper-sized PPO epoch (500 slots) at 1024; a 27-point sweep at 1024
  # instances x 50 slots per point; every figure of the quick reproduction
  SCALING=(--max-n 1048576 --ue-envs 16384 --train-envs 256,4096); VQC_BATCHES=(4096 65536)
  TRAIN=(--envs 1024 --repeats 2); JOINT=(--slots 4096 --batch 512 --repeats 2); SWEEP=(--envs 1024 --slots 50)
  QUICK=(); L_SCALING=150; L_VQC=25; L_TRAIN=65; L_JOINT=40; L_SWEEP=90; L_QUICK=300
fi

stage scaling "$L_SCALING" "$PY" benchmarks/bench_scaling.py "${SCALING[@]}" --out "$DEST/scaling.json"
for B in "${VQC_BATCHES[@]}"; do  # forward + backward of the VQC torso's circuit
  stage "vqc_$B" "$L_VQC" "$PY" benchmarks/bench_vqc.py --quick --no-torch --batch "$B" --out "$DEST/vqc_$B.json"
done
stage train "$L_TRAIN" "$PY" benchmarks/bench_train.py --no-torch --epochs 1 "${TRAIN[@]}" --out "$DEST/train.json"
stage joint "$L_JOINT" "$PY" benchmarks/bench_joint.py "${JOINT[@]}" --out "$DEST/joint.json"
stage sweep "$L_SWEEP" "$PY" benchmarks/bench_sweep.py --repeats 1 --sample 2 "${SWEEP[@]}" --out "$DEST/sweep.json"
stage quick "$L_QUICK" "$PY" -m meqc_jax.cli reproduce --quick --force --no-progress --workers 1 "${QUICK[@]}" \
  --out "$DEST/reproduce-quick"

TOTAL=$(( $(date +%s) - START ))
STAGES_JSON="[$(IFS=,; echo "${STAGES[*]}")]"
"$PY" - "$DEST" "$SMOKE" "$TOTAL" "$STAGES_JSON" <<'EOF'
import json, os, sys

dest, smoke, total, stages = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), json.loads(sys.argv[4])


def load(name):
    try:
        with open(os.path.join(dest, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


figures = {}
scaling = load("scaling.json") or {"parts": {}}
env_n = scaling["parts"].get("env_n") or []
if env_n:
    best = max(env_n, key=lambda r: r["user_slots_per_s"])
    figures["env_step_user_slots_per_s"] = {"value": best["user_slots_per_s"], "num_envs": best["num_envs"],
                                            "users": best["users"]}
for r in scaling["parts"].get("train") or []:
    figures[f"ppo_agent_steps_per_s_envs_{r['num_envs']}"] = {"value": r["agent_steps_per_s"], "users": r["users"],
                                                             "slots_per_epoch": r["slots_per_epoch"]}
train = load("train.json")
if train:
    figures["ppo_agent_steps_per_s"] = {"value": train["jax"]["agent_steps_per_s"], "envs": train["envs"],
                                        "users": train["users"], "slots_per_epoch": train["slots_per_epoch"]}
for name in sorted(os.listdir(dest)):
    if name.startswith("vqc_") and name.endswith(".json") and (v := load(name)):
        figures[f"vqc_forward_backward_ms_batch_{v['batch']}"] = {"value": v["ms"]["jax"]}
joint = load("joint.json")
if joint and joint["sizes"]:
    r = joint["sizes"][-1]
    figures["joint_optimum_dp_slots_per_s"] = {"value": r["dp"]["slots_per_s"], "users": r["num_users"],
                                               "servers": r["num_servers"]}
sweep = load("sweep.json")
if sweep and "sweep_point_slots_per_s" in sweep:
    figures["sweep_grid_point_slots_per_s"] = {"value": sweep["sweep_point_slots_per_s"], "points": sweep["points"],
                                               "one_by_one_ratio": sweep["ratio_median"]}
quick = next((s for s in stages if s["stage"] == "quick"), None)
if quick and quick["exit"] == 0:
    figures["quick_reproduction_s"] = {"value": quick["seconds"], "parts": "fig10, 1 epoch" if smoke else "all"}
out = {"smoke": smoke, "ok": all(s["exit"] == 0 for s in stages), "total_seconds": total,
       "device": load("device.json"), "stages": stages, "figures": figures}
tmp = os.path.join(dest, "gpu_check.json.tmp")
with open(tmp, "w") as f:
    json.dump(out, f, indent=1)
os.replace(tmp, os.path.join(dest, "gpu_check.json"))
for k, v in figures.items():
    print(f"{k}: {v['value']:.4g}")
EOF
[ $? -eq 0 ] || FAILED=1
echo "gpu_check: ${TOTAL}s in all; results in $DEST/gpu_check.json; $([ "$FAILED" = 0 ] && echo 'every stage exited 0' || echo 'FAILED: a stage failed or timed out')"
exit "$FAILED"

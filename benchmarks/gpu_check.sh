#!/usr/bin/env bash
# One-GPU check of raco (issue 13), under 8 minutes on one H100:
#   1. nvidia-smi, torch / CUDA / transformers / accelerate versions;
#   2. fused == plain per-objective gradients on CUDA and the step-cost ratios (weighted sum, RACO plain,
#      RACO fused) with torch.cuda.max_memory_allocated, for the tiny model and a random
#      Qwen3-0.6B-shaped model, bfloat16 autocast over float32 master weights (benchmarks/gpu_check.py);
#   3. the same checks as a single-process NCCL job (torchrun), all-reducing the step's tensors;
#   4. raco train under torchrun (1 process, NCCL) with model.dtype bfloat16: the tiny model and the
#      Qwen3-0.6B-shaped model (written to a local folder first: no hub access needed);
#   5. FSDP2: raco train under `accelerate launch --config_file configs/accelerate/fsdp2.yaml
#      --num_processes 1`; skipped, with a message, where raco reports FSDP2 unsupported.
# Every step runs even when an earlier one fails; the summary lists PASS/FAIL/SKIP and the exit status
# is 1 if any step failed.
#
#   bash benchmarks/gpu_check.sh                          # on a GPU machine, from the repository root
#   GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh --quick   # CPU smoke run: tiny model only, < 60 s
#   bash benchmarks/gpu_check.sh --dry-run                # print the commands, run nothing
#
# Environment: PYTHON (default .venv/bin/python, else python3), GPU_CHECK_DEVICE (cuda or cpu; default
# cuda when torch sees a GPU), GPU_CHECK_OUT (working folder, default a new temporary folder),
# GPU_CHECK_FSDP2_ON_CPU=1 (run step 5 on CPU too: gloo; raco honours the FSDP config there).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
QUICK=0
DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --dry-run) DRY_RUN=1 ;;
        -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (use --quick, --dry-run)" >&2; exit 2 ;;
    esac
done

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
TORCHRUN=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 1)
ACCELERATE=("$PYTHON" -m accelerate.commands.launch)
if [[ -z "${GPU_CHECK_DEVICE:-}" ]]; then
    if [[ $DRY_RUN == 1 ]]; then
        GPU_CHECK_DEVICE=cuda
    else
        GPU_CHECK_DEVICE=$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
    fi
fi
DEVICE="$GPU_CHECK_DEVICE"
if [[ $DRY_RUN == 1 ]]; then
    OUT="${GPU_CHECK_OUT:-/tmp/raco-gpu-check-DRY-RUN}"
else
    OUT="${GPU_CHECK_OUT:-$(mktemp -d -t raco-gpu-check-XXXXXX)}"
    mkdir -p "$OUT"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [[ $QUICK == 1 ]]; then  # tiny model only, float32 (bfloat16 autocast is slow on CPUs), one repeat
    ENGINE_ARGS=(--device "$DEVICE" --models tiny --ks 2 --repeats 1 --shape 2 16 32)
    [[ $DEVICE == cpu ]] && ENGINE_ARGS+=(--dtype float32)
    TRAIN_STEPS=2
else
    ENGINE_ARGS=(--device "$DEVICE" --models tiny qwen3 --ks 2 3 --repeats 3)
    TRAIN_STEPS=3
fi
TRAIN_DTYPE=bfloat16
[[ $QUICK == 1 && $DEVICE == cpu ]] && TRAIN_DTYPE=float32
TRAIN_ARGS=(--config configs/cpu/tiny-random.yaml --model.dtype "$TRAIN_DTYPE" --train.max_steps "$TRAIN_STEPS"
    --train.eval_every 0 --train.save_every 0 --data.max_eval_rows 16 --overwrite true)
BACKEND=NCCL
[[ $DEVICE == cuda ]] || BACKEND=gloo

declare -a SUMMARY=()
FAILED=0

# step NAME COMMAND...: run it (or print it with --dry-run), record PASS or FAIL, go on.
step() {
    local name="$1"
    shift
    echo
    echo "=== $name"
    echo "+ $*"
    if [[ $DRY_RUN == 1 ]]; then
        SUMMARY+=("DRY   $name")
        return 0
    fi
    local started=$SECONDS
    if "$@"; then
        SUMMARY+=("PASS  $name ($((SECONDS - started)) s)")
    else
        SUMMARY+=("FAIL  $name ($((SECONDS - started)) s, exit $?)")
        FAILED=1
    fi
}

skip() {
    echo
    echo "=== $1"
    echo "SKIP: $2"
    SUMMARY+=("SKIP  $1: $2")
}

versions() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi
    else
        echo "nvidia-smi: not found (device $DEVICE)"
    fi
    "$PYTHON" - <<'PY'
import platform
from importlib.metadata import version

import torch

print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, GPUs {torch.cuda.device_count()}")
for gpu in range(torch.cuda.device_count()):
    print(f"  cuda:{gpu} {torch.cuda.get_device_name(gpu)}, bf16 {torch.cuda.is_bf16_supported()}")
print(", ".join(f"{p} {version(p)}" for p in ("transformers", "accelerate", "peft", "raco-align")))
print("NCCL", torch.cuda.nccl.version() if torch.cuda.is_available() else "n/a (no CUDA)")
PY
}

# a finished raco run: its steps ran with finite losses and it wrote its model
check_run() {
    "$PYTHON" - "$1" "$TRAIN_STEPS" <<'PY'
import json, math, sys
from pathlib import Path

run, steps = Path(sys.argv[1]), int(sys.argv[2])
summary = json.loads((run / "summary.json").read_text())
losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "skipped" in r]
assert summary["steps"] == steps and len(losses) == steps, (summary["steps"], losses)
assert all(math.isfinite(x) for x in losses), losses
assert (run / "model").is_dir(), "no model/ folder"
print(f"ran {steps} steps, losses {[round(x, 4) for x in losses]}, processes {summary['processes']}, "
      f"model in {summary['model_dir']}")
how = {k: v for k, v in summary.items() if "distribut" in k or "fsdp" in k.lower()}
print(f"distribution (summary.json): {how}" if how else "summary.json does not say how the run was distributed")
PY
}

# raco train, then check_run
train_and_check() {
    local run_dir="$1"
    shift
    "$@" --output_dir "$run_dir" || return $?
    check_run "$run_dir"
}

# FSDP2 through accelerate, 1 process; a SKIP where raco refuses FSDP2 (support lands separately)
fsdp2_step() {
    local name="5. FSDP2: accelerate launch --config_file configs/accelerate/fsdp2.yaml --num_processes 1"
    local log="$OUT/fsdp2.log"
    local cmd=("${ACCELERATE[@]}" --config_file configs/accelerate/fsdp2.yaml --num_processes 1
        -m raco.training.cli_train "${TRAIN_ARGS[@]}" --output_dir "$OUT/fsdp2-tiny")
    if [[ $DEVICE != cuda && $DRY_RUN == 0 && -z "${GPU_CHECK_FSDP2_ON_CPU:-}" ]]; then
        skip "$name" "needs CUDA (FSDP2 on CPU is tested over gloo by the training tests)"
        return 0
    fi
    echo
    echo "=== $name"
    echo "+ ${cmd[*]}"
    if [[ $DRY_RUN == 1 ]]; then
        SUMMARY+=("DRY   $name")
        return 0
    fi
    local status=0
    "${cmd[@]}" >"$log" 2>&1 || status=$?
    tail -n 25 "$log"
    if [[ $status == 0 ]]; then
        if check_run "$OUT/fsdp2-tiny"; then
            SUMMARY+=("PASS  $name")
        else
            SUMMARY+=("FAIL  $name (the run finished but its outputs are wrong)")
            FAILED=1
        fi
    elif grep -Eiq "(fsdp2|fsdp_version: ?2)[^ ]* [^.;]*(not supported|unsupported)" "$log"; then
        SUMMARY+=("SKIP  $name: raco reports FSDP2 unsupported (see $log)")
    else
        SUMMARY+=("FAIL  $name (exit $status, see $log)")
        FAILED=1
    fi
}

echo "raco gpu_check: device $DEVICE, quick $QUICK, output in $OUT"
step "1. nvidia-smi and versions" versions
step "2. fused == plain and step cost ($DEVICE)" \
    "$PYTHON" benchmarks/gpu_check.py "${ENGINE_ARGS[@]}" --json "$OUT/engine.json"
step "3. single-process $BACKEND job (torchrun): fused == plain, collectives on device" \
    "${TORCHRUN[@]}" benchmarks/gpu_check.py "${ENGINE_ARGS[@]}" --models tiny --skip-cost
step "4a. raco train, tiny model, torchrun 1 process" \
    train_and_check "$OUT/train-tiny" "${TORCHRUN[@]}" -m raco.training.cli_train "${TRAIN_ARGS[@]}"
if [[ $QUICK == 1 ]]; then
    skip "4b. raco train, Qwen3-0.6B shape" "--quick runs the tiny model only"
else
    step "4b. write the Qwen3-0.6B-shaped random model" \
        "$PYTHON" benchmarks/gpu_check.py write-qwen3 "$OUT/qwen3-0.6b-random"
    step "4b. raco train, Qwen3-0.6B shape, torchrun 1 process" \
        train_and_check "$OUT/train-qwen3" "${TORCHRUN[@]}" -m raco.training.cli_train "${TRAIN_ARGS[@]}" \
        --model.name "$OUT/qwen3-0.6b-random" --model.gradient_checkpointing true \
        --data.max_length 256 --data.max_prompt_length 128 --train.lr 1e-5
fi
fsdp2_step

echo
echo "=== summary (device $DEVICE; outputs in $OUT; ${SECONDS} s)"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"

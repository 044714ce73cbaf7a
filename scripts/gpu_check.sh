#!/usr/bin/env bash
# The GPU fast path of issue 9, checked on a machine with a CUDA GPU in one command (about
# 6 minutes): the card's name, the gpu-marked tests, a one-GPU DDP smoke test (issue 10), then
# dltrain's speed at each trainer.precision, without and with trainer.compile.
#
#   bash scripts/gpu_check.sh [OUT_DIR]     # default: outputs/gpu_check-YYYYmmdd-HHMMSS
#
# It installs nothing: run it where `pip install -e ".[dev]"` was done. Everything it prints also
# goes to OUT_DIR/gpu_check.txt, and the figures to OUT_DIR/results.tsv (one row per run).
#
# What it measures, at each precision, every run without compile first, then with compile:
#   - the CNN (model=cnn: channels [32,64], dense 128) on CIFAR-10-sized synthetic images,
#     3x32x32 with 50,000 training samples, batch 128: the time of an epoch;
#   - the workloads of scripts/bench.py (its overrides, scripts/bench/workloads.py): samples/s.
# A time budget (GPU_CHECK_BUDGET_S, 280 s by default, counted from the start) skips the runs
# left when it is spent, and says so in results.tsv: each compiled run spends tens of seconds
# compiling, so the whole table takes GPU_CHECK_BUDGET_S=900 or so.
# scripts/bench.py compares approaches on the CPU and has no --device, --precision or --compile
# option, so this runs the dltrain command itself. Each run trains 2 epochs (tiny: 40); the
# figures are the last epoch's (metrics.csv), since the first also warms up (cuDNN's algorithm
# search, the allocator). samples_per_s already leaves out the time spent compiling, which is
# compile_time_s (summary.json).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
OUT_DIR=${1:-outputs/gpu_check-$(date +%Y%m%d-%H%M%S)}
BUDGET_S=${GPU_CHECK_BUDGET_S:-280}
mkdir -p "$OUT_DIR/runs" || exit 1
exec > >(tee "$OUT_DIR/gpu_check.txt") 2>&1

echo "== the card"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    || echo "nvidia-smi failed"
python -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, \
'| available:', torch.cuda.is_available())"
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "torch sees no CUDA device: nothing to check here"
    exit 1
fi

echo
echo "== the CUDA tests: pytest -m gpu"
timeout 180 python -m pytest -m gpu -q -p no:cacheprovider
tests_rc=$?
echo "pytest -m gpu: exit status $tests_rc"

echo
echo "== DDP on one GPU (issue 10): torchrun, NCCL, SyncBatchNorm, then a one-process resume"
DDP_RUN="$OUT_DIR/runs/ddp_smoke"
timeout 240 python -m torch.distributed.run --standalone --nproc_per_node=1 -m dltrain \
    trainer.strategy=ddp trainer.device=cuda model=cnn regularization.batch_norm=true \
    trainer.sync_batchnorm=true trainer.epochs=2 trainer.progress=none "hydra.run.dir=$DDP_RUN" \
    < /dev/null > "$DDP_RUN.log" 2>&1 \
  && timeout 120 python -m dltrain resume "$DDP_RUN" trainer.epochs=3 trainer.progress=none \
    < /dev/null >> "$DDP_RUN.log" 2>&1
ddp_rc=$?
python - "$DDP_RUN" "$ddp_rc" <<'EOF'
import json, sys
from pathlib import Path

import yaml

run, rc = Path(sys.argv[1]), sys.argv[2]
summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
record = yaml.safe_load((run / "run.yaml").read_text()) if (run / "run.yaml").exists() else {}
print(f"exit {rc}; DDP record {record.get('distributed')}; after the resume: status "
      f"{summary.get('status')}, epochs {summary.get('epochs_completed')}, "
      f"test_acc {summary.get('test_acc')}, device {summary.get('device')}")
EOF
if ((ddp_rc != 0)); then
    echo "DDP smoke test failed: see $DDP_RUN.log"
    tail -n 30 "$DDP_RUN.log"
    tests_rc=1
fi

RESULTS="$OUT_DIR/results.tsv"
printf 'workload\tprecision\tcompile\tepoch_time_s\tsamples_per_s\tcompile_time_s\tstatus\n' \
    > "$RESULTS"

# run_one NAME PRECISION COMPILE OVERRIDES...: one dltrain run on CUDA, one row of results.tsv
run_one() {
    local name=$1 precision=$2 compile=$3
    shift 3
    local dir="$OUT_DIR/runs/$name-$precision-compile_$compile"
    local left=$((BUDGET_S - SECONDS))
    if ((left < 20)); then
        printf '%s\t%s\t%s\t\t\t\tskipped: time budget spent\n' "$name" "$precision" "$compile" \
            >> "$RESULTS"
        return
    fi
    echo "-- $name, trainer.precision=$precision, trainer.compile=$compile"
    timeout "$left" python -m dltrain "$@" trainer.device=cuda "trainer.precision=$precision" \
        "trainer.compile=$compile" trainer.progress=none "hydra.run.dir=$dir" \
        < /dev/null > "$dir.log" 2>&1
    local rc=$?
    python - "$dir" "$name" "$precision" "$compile" "$rc" >> "$RESULTS" <<'EOF'
import csv, json, sys
from pathlib import Path

run, name, precision, compile_, rc = sys.argv[1:]
run = Path(run)
row, summary = {}, {}
if (run / "metrics.csv").exists():
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    row = rows[-1] if rows else {}
if (run / "summary.json").exists():
    summary = json.loads((run / "summary.json").read_text())
status = "ok" if rc == "0" else f"exit {rc} (see {run}.log)"


def fmt(value, digits):
    return "" if value in (None, "") else f"{float(value):.{digits}f}"


print("\t".join([name, precision, compile_, fmt(row.get("epoch_time_s"), 3),
                 fmt(row.get("samples_per_s"), 0), fmt(summary.get("compile_time_s"), 1),
                 status]))
EOF
    tail -n 1 "$RESULTS"
}

PRECISIONS=(32 bf16-mixed 16-mixed)
# data.num_samples=51020 leaves 50,000 for training with 1 % each for validation and test
CIFAR=(model=cnn data=synthetic "data.shape=[3,32,32]" data.num_samples=51020
       data.val_fraction=0.01 data.test_fraction=0.01 data.num_classes=10 optim=adam
       trainer.batch_size=128 trainer.epochs=2)
WORKLOADS=$(python - <<'EOF'
import sys
sys.path.insert(0, "scripts")
try:
    from bench.workloads import WORKLOADS
except ImportError as e:
    print(f"# scripts/bench/workloads.py could not be read: {e}", file=sys.stderr)
    sys.exit(0)
for name, w in WORKLOADS.items():
    overrides = [o for o in w.dltrain_overrides(quick=False, threads=8, progress="none",
                                                 epochs_scale=2)
                 if not o.startswith("trainer.device=")]
    print(name, *overrides)
EOF
)

# every run without compile first (seconds each), then the compiled ones (a warm-up each)
for compile in false true; do
    echo
    echo "== trainer.compile=$compile: the CNN on 3x32x32 synthetic images, 50,000 training" \
         "samples (time per epoch), then the workloads of scripts/bench.py (samples/s)"
    for precision in "${PRECISIONS[@]}"; do
        run_one cifar_cnn "$precision" "$compile" "${CIFAR[@]}"
    done
    while read -r name overrides; do
        [[ -z "$name" ]] && continue
        for precision in "${PRECISIONS[@]}"; do
            # shellcheck disable=SC2086  # the overrides hold no spaces: split them
            run_one "$name" "$precision" "$compile" $overrides
        done
    done <<< "$WORKLOADS"
done

echo
echo "== results ($RESULTS)"
column -t -s $'\t' "$RESULTS" 2>/dev/null || cat "$RESULTS"
echo
echo "pytest -m gpu: exit status $tests_rc; total ${SECONDS}s; output in $OUT_DIR/gpu_check.txt"
exit "$tests_rc"

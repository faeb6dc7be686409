#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: configure and build with CUDA for sm_90,
# run the CUDA tests (op-table parity, HVP parity, host waits, determinism,
# the BiSSL trainer on the device), and optionally more, each step under its
# own time limit, the most needed first:
#   PIPELINE=1     the --quick BiSSL pipeline (every stage) on the GPU, then
#                  (after BENCH) the mosaic multi-label one
#   BENCH=1        bissl-bench (and its R50 steps once more without the
#                  per-shape convolution autotuning) and the PyTorch anchor
#                  beside it when torch is importable
#   DETERMINISM=1  the --quick main pipeline twice with pipeline.deterministic
#                  (trimmed: FT and BiSSL arms, one seed), BiSSL metrics compared
#   PERF=1         every op-table case timed on the GPU (bissl-ops perf)
# What comes back ($OUT, at most a few files): summary.txt (one line per
# step: status and seconds), results.tgz (every log and JSON, no
# checkpoints; refreshed after each step, so a cut-off run still returns
# what it did), bench_bissl.json and anchor_torch.json when BENCH ran.
# BUDGET (seconds, default 540) skips the steps that would start after it.
# BUILD_DIR (default build-gpu) and SKIP_BUILD=1 reuse an existing build.
# Data and the anchor: Debian's Fashion-MNIST and ../shared/bench when
# present, else the copies under .deps/ (carry .deps on the device call:
# it also holds the headers the build needs); FMNIST= / ANCHOR= override.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/bissl-gpu}
WORK=${WORK:-/tmp/bissl-gpu-work}
BUDGET=${BUDGET:-540}
B=${BUILD_DIR:-build-gpu}  # kept on a warm machine: a second call rebuilds nothing
mkdir -p "$OUT" "$WORK"
start=$(date +%s)
fm=${FMNIST:-}
if [ -z "$fm" ]; then
  fm=/usr/share/datasets/fashion-mnist
  [ -d "$fm" ] || fm=$PWD/.deps/fashion-mnist
fi
anchor=${ANCHOR:-}
if [ -z "$anchor" ]; then
  anchor=../shared/bench/torch_anchor.py
  [ -f "$anchor" ] || anchor=.deps/torch_anchor.py
fi

: >"$OUT/summary.txt"
pack() {  # everything readable, no checkpoints, into one file that comes back
  tar czf "$OUT/results.tgz" -C "$WORK" --exclude='*.safetensors' . 2>/dev/null
}
# run_step NAME LIMIT_S COMMAND: skipped past the budget; recorded either way.
run_step() {
  local name=$1 limit=$2 cmd=$3 t0 rc status
  if (( $(date +%s) - start + 30 > BUDGET )); then
    printf '%-24s skipped (budget %s s spent)\n' "$name" "$BUDGET" | tee -a "$OUT/summary.txt"
    return 0
  fi
  echo "==== $name (limit ${limit} s) ===="
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" bash -c "$cmd"
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMED OUT" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  printf '%-24s %-18s %4d s\n' "$name" "$status" $(( $(date +%s) - t0 )) | tee -a "$OUT/summary.txt"
  pack
  return 0
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$WORK/gpu.txt" "$OUT/summary.txt"
targets="test_cuda test_bilevel"
[ "${PIPELINE:-0}" = 1 ] || [ "${DETERMINISM:-0}" = 1 ] && targets="$targets bissl-pipeline"
[ "${BENCH:-0}" = 1 ] && targets="$targets bissl-bench"
[ "${PERF:-0}" = 1 ] && targets="$targets bissl-ops"
export WORK targets fm anchor OUT B
[ "${SKIP_BUILD:-0}" = 1 ] || run_step build 420 '
  cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >"$WORK/configure.log" 2>&1 ||
    { tail -40 "$WORK/configure.log"; exit 1; }
  cmake --build "$B" -j"$(nproc)" --target $targets >"$WORK/build.log" 2>&1 ||
    { grep -E "error" -A3 "$WORK/build.log" | head -80; exit 1; }'
if [ ! -x "$B/tests/test_cuda" ]; then
  echo "no build: see configure.log / build.log in results.tgz"
  pack
  exit 1
fi

run_step test_cuda 240 '
  set -o pipefail
  ./$B/tests/test_cuda 2>&1 | tee "$WORK/test_cuda.log" | grep -vE "^\s*$" | tail -60'
cp "$WORK/test_cuda.log" "$OUT/" 2>/dev/null
# The BiSSL trainer on the device against the CPU (f64).
run_step test_bilevel_cuda 150 '
  set -o pipefail
  ./$B/tests/test_bilevel -tc="*CUDA*" -s 2>&1 | tee "$WORK/test_bilevel_cuda.log" |
    grep -E "MESSAGE|ERROR|SKIPPED|passed|failed" | tail -20'

pipeline() {  # pipeline NAME CONFIG [--set ...]: the --quick pipeline on the GPU
  local name=$1 cfg=$2
  shift 2
  echo "./$B/bissl-pipeline --config configs/$cfg.toml --quick --set pipeline.device=cuda \
    --set pipeline.out=\"\$WORK/$name\" --set pipeline.pretrained= --set task.root=\"\$fm\" \
    --set pretrain.data.root=\"\$fm\" $* >\"\$WORK/$name.log\" 2>&1 || { tail -20 \"\$WORK/$name.log\"; exit 1; }
    sed -n \"/^| arm/,/^\$/p\" \"\$WORK/$name/report.md\""
}
if [ "${PIPELINE:-0}" = 1 ]; then
  run_step pipeline_quick 240 "$(pipeline pipeline_fashion_mnist pipeline_fashion_mnist)"
fi

if [ "${BENCH:-0}" = 1 ]; then
  run_step bench 300 '
    set -o pipefail
    ./$B/bissl-bench --device cuda --out "$WORK/bench_bissl.json" 2>&1 | tail -40 || exit 1
    # The same R50 steps with cuDNN taken whenever it accepts a shape (no
    # per-shape autotuning against im2col + cuBLAS): what the autotuning buys.
    ./$B/bissl-bench --device cuda --only r50 --no-autotune --out "$WORK/bench_bissl_no_autotune.json" 2>&1 |
      grep -E "\"r50_.*_ms\"|conv_choices"
    if [ -f "$anchor" ] && python3 -c "import torch" 2>/dev/null; then
      OUT="$WORK" PYTHONUNBUFFERED=1 python3 "$anchor" 2>&1 | tail -30
    else
      echo "PyTorch anchor not run (no torch, or no $anchor)"
    fi'
  cp "$WORK/bench_bissl.json" "$WORK/anchor_torch.json" "$OUT/" 2>/dev/null
fi

if [ "${PIPELINE:-0}" = 1 ]; then
  run_step pipeline_mosaic 200 "$(pipeline pipeline_fashion_mnist_mosaic pipeline_fashion_mnist_mosaic)"
fi

if [ "${DETERMINISM:-0}" = 1 ]; then
  # Two deterministic runs, trimmed to the arms that matter: the BiSSL
  # stage's per-alternation metrics must be equal to the last digit.
  trim="--set pipeline.deterministic=true --set pipeline.arms=ft,bissl --set finetune.seeds=1 \
--set finetune.search_trials=1 --set eval.tsne_points=0"
  run_step determinism_1 200 "$(pipeline determinism_1 pipeline_fashion_mnist $trim)"
  run_step determinism_2 200 "$(pipeline determinism_2 pipeline_fashion_mnist $trim)"
  strip() { sed 's/"seconds":[0-9.e+-]*,\?//' "$1"; }  # wall times differ; nothing else may
  if [ -f "$WORK/determinism_2/train/bissl/metrics.jsonl" ]; then
    if cmp -s <(strip "$WORK/determinism_1/train/bissl/metrics.jsonl") \
              <(strip "$WORK/determinism_2/train/bissl/metrics.jsonl"); then
      echo "determinism: the same BiSSL metrics in both runs" | tee -a "$OUT/summary.txt"
    else
      echo "determinism: the two deterministic CUDA runs DIFFER" | tee -a "$OUT/summary.txt"
    fi
  fi
fi

if [ "${PERF:-0}" = 1 ]; then
  run_step perf 150 '
    ./$B/bissl-ops perf --device cuda --scale 16 --reps 20 >"$WORK/perf_cuda.json" 2>"$WORK/perf_cuda.err" ||
      { tail -5 "$WORK/perf_cuda.err"; exit 1; }
    python3 tools/perf_table.py "$WORK/perf_cuda.json" | tee "$WORK/perf_cuda.txt" | head -40'
fi

echo "total: $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
echo "==== summary ===="
cat "$OUT/summary.txt"
pack

#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: configure and build with CUDA for sm_90,
# run the CUDA tests (op-table parity, HVP parity), time every op on the GPU,
# print a short table. Results land in $OUT (default /tmp/bissl-gpu).
# With BENCH=1 also runs bissl-bench (and its R50 steps once more without the
# per-shape convolution autotuning) and, when PyTorch and the anchor script
# are there (ANCHOR=path/to/torch_anchor.py), the PyTorch anchor beside it.
# With PIPELINE=1 also runs the --quick BiSSL pipeline (every stage) on the
# GPU and the mosaic (multi-label) one; FMNIST=dir points at the Fashion-MNIST
# .gz files when Debian's package is not installed there. With DETERMINISM=1
# it runs the --quick main pipeline twice with pipeline.deterministic and
# compares the BiSSL stage's metrics.
# Sized to finish in a few minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/bissl-gpu}
mkdir -p "$OUT"
jobs=$(nproc)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
start=$(date +%s)
if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/configure.log" 2>&1; then
  tail -40 "$OUT/configure.log"; exit 1
fi
targets="test_cuda test_op_table test_bilevel bissl-ops bissl-bench"
[ "${PIPELINE:-0}" = 1 ] && targets="$targets bissl-pipeline"
if ! cmake --build build-gpu -j"$jobs" --target $targets >"$OUT/build.log" 2>&1; then
  grep -E "error" -A3 "$OUT/build.log" | head -80; exit 1
fi
echo "build: $(( $(date +%s) - start )) s"
./build-gpu/tests/test_cuda 2>&1 | tee "$OUT/test_cuda.log" | grep -vE "^\s*$" | tail -60
# The BiSSL trainer on the device against the CPU (f64).
./build-gpu/tests/test_bilevel -tc="*CUDA*" -s 2>&1 | tee "$OUT/test_bilevel_cuda.log" | grep -E "MESSAGE|ERROR|SKIPPED|passed|failed" | tail -20
if [ "${PERF:-1}" = 1 ]; then
./build-gpu/bissl-ops perf --device cuda --scale 16 --reps 20 >"$OUT/perf_cuda.json" 2>"$OUT/perf_cuda.err" ||
  tail -5 "$OUT/perf_cuda.err"
python3 - "$OUT/perf_cuda.json" >"$OUT/perf_cuda.txt" <<'PY' || true
import json, sys
d = json.load(open(sys.argv[1]))
print(d["backend"])
print(f"{'op':26s} {'case':22s} {'fwd ms':>9s} {'fwd+bwd ms':>11s} {'rate':>12s}")
for r in d["results"]:
    rate = f"{r['forward_gflops']:.0f} GFLOP/s" if "forward_gflops" in r else f"{r['forward_gbps']:.1f} GB/s"
    print(f"{r['op']:26s} {r['case']:22s} {r['forward_ms']:9.3f} {r['forward_backward_ms']:11.3f} {rate:>12s}")
PY
grep -E "^(cpu|op )|perf_" "$OUT/perf_cuda.txt"
fi
if [ "${BENCH:-0}" = 1 ]; then
  ./build-gpu/bissl-bench --device cuda --out "$OUT/bench_bissl.json" 2>&1 | tail -30
  # The same R50 steps with cuDNN taken whenever it accepts a shape (no
  # per-shape autotuning against im2col + cuBLAS): what the autotuning buys.
  ./build-gpu/bissl-bench --device cuda --only r50 --no-autotune --out "$OUT/bench_bissl_no_autotune.json" 2>&1 |
    grep -E '"r50_.*_ms"|conv_choices'
  anchor=${ANCHOR:-../shared/bench/torch_anchor.py}
  if [ -f "$anchor" ] && python3 -c "import torch" 2>/dev/null; then
    OUT="$OUT" python3 "$anchor" 2>&1 | tail -30
  else
    echo "PyTorch anchor not run (no torch or no $anchor)"
  fi
fi
if [ "${PIPELINE:-0}" = 1 ]; then
  fm=${FMNIST:-/usr/share/datasets/fashion-mnist}
  for cfg in pipeline_fashion_mnist pipeline_fashion_mnist_mosaic; do
    ./build-gpu/bissl-pipeline --config configs/$cfg.toml --quick --set pipeline.device=cuda \
      --set pipeline.out="$OUT/$cfg" --set pipeline.pretrained= --set task.root="$fm" \
      --set pretrain.data.root="$fm" >"$OUT/$cfg.log" 2>&1 || { echo "$cfg failed:"; tail -20 "$OUT/$cfg.log"; }
    sed -n '/^| arm/,/^$/p' "$OUT/$cfg/report.md" 2>/dev/null
  done
fi
if [ "${DETERMINISM:-0}" = 1 ]; then
  # The --quick main pipeline twice with pipeline.deterministic: the BiSSL
  # stage's per-alternation metrics must be equal to the last digit.
  fm=${FMNIST:-/usr/share/datasets/fashion-mnist}
  for k in 1 2; do
    ./build-gpu/bissl-pipeline --config configs/pipeline_fashion_mnist.toml --quick --set pipeline.device=cuda \
      --set pipeline.deterministic=true --set pipeline.out="$OUT/determinism_$k" --set pipeline.pretrained= \
      --set task.root="$fm" --set pretrain.data.root="$fm" >"$OUT/determinism_$k.log" 2>&1 ||
      { echo "determinism run $k failed:"; tail -20 "$OUT/determinism_$k.log"; }
  done
  strip() { sed 's/"seconds":[0-9.e+-]*,\?//' "$1"; }  # wall times differ; nothing else may
  if cmp -s <(strip "$OUT/determinism_1/train/bissl/metrics.jsonl") \
            <(strip "$OUT/determinism_2/train/bissl/metrics.jsonl"); then
    echo "determinism: two deterministic CUDA runs gave the same BiSSL metrics"
  else
    echo "determinism: the two deterministic CUDA runs DIFFER (see $OUT/determinism_*)"
  fi
fi
echo "total: $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# The README's test command: installs missing packages, builds (CUDA too when
# the toolkit exists), runs every non-slow test. CUDA tests skip loudly
# without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
jobs=$(nproc)
# Tests run side by side: OpenMP threads that spin while waiting would starve
# each other (measured 4x slower on 2 cores).
export OMP_WAIT_POLICY=PASSIVE
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build -LE slow --output-on-failure -j"$jobs"
# Say plainly whether the GPU checks ran.
./build/tests/test_cuda | grep -E "SKIPPED|backend" || true
# Hostile inputs (docs/security.md), in the sanitizer build (clang, ASan +
# UBSan + LSan, build-fuzz/): the CPU tests not labelled nosan and the main
# job's --quick pipeline; then every fuzz target on its saved regression
# inputs and 5 s from its seed corpus.
bash tools/sanitize.sh quick
bash tools/fuzz.sh smoke 5

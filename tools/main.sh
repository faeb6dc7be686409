#!/usr/bin/env bash
# The README's main job: installs missing packages (Fashion-MNIST included),
# builds bissl-pipeline (CUDA too when the toolkit exists; the GPU is used when
# one is present), and runs the BiSSL pipeline on Fashion-MNIST with the
# default config. Extra arguments go to bissl-pipeline, e.g. --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target bissl-pipeline
exec ./build/bissl-pipeline --config configs/pipeline_fashion_mnist.toml "$@"

#!/usr/bin/env bash
# Installs the Debian packages the build needs, only those that are missing.
# Safe to run repeatedly; uses sudo when not root.
set -euo pipefail
pkgs=(cmake g++ doctest-dev libstb-dev libopenblas-dev libopenblas-openmp-dev libdnnl-dev zlib1g-dev libcli11-dev
      nlohmann-json3-dev libtomlplusplus-dev libopenmpi-dev openmpi-bin dataset-fashion-mnist
      clang libclang-rt-14-dev libomp-14-dev)  # clang: the fuzz targets (tools/fuzz.sh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all build dependencies present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

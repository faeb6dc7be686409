#!/usr/bin/env bash
# The fuzz targets of fuzz/ (docs/security.md): built with clang, libFuzzer,
# AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer) in
# build-fuzz/ (the sanitizer build of tools/sanitize.sh), and run.
#   tools/fuzz.sh build                 configure and build every target
#   tools/fuzz.sh smoke [SECONDS]       each target SECONDS (default 10) from its seed corpus, and every
#                                       saved regression input once: the check CI runs
#   tools/fuzz.sh run TARGET [FLAGS]    one target on its corpus with libFuzzer's flags, e.g.
#                                       tools/fuzz.sh run idx -runs=10000000
# New inputs go to build-fuzz/corpus/<target>/ (the seed corpus in the tree is
# read only); a crash leaves crash-* / leak-* / timeout-* files in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-smoke}
targets="safetensors checkpoint idx cifar_stl10 image voc split_file config folder"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

build() {  # the sanitizer build's configuration (tools/sanitize.sh), its fuzz targets
  bash tools/sanitize.sh configure
  if ! cmake --build build-fuzz -j"$(nproc)" --target fuzz_all > build-fuzz/build_fuzz.log 2>&1; then
    tail -n 30 build-fuzz/build_fuzz.log; echo "tools/fuzz.sh: the fuzz build failed (build-fuzz/build_fuzz.log)"; exit 1
  fi
}

flags() {  # the common libFuzzer flags of target $1
  local t=$1
  echo "-rss_limit_mb=2048 -timeout=60 -print_final_stats=1"
  [ -f "fuzz/dict/$t.dict" ] && echo "-dict=fuzz/dict/$t.dict"
  true
}

run_one() {  # target, extra flags...
  local t=$1; shift
  mkdir -p "build-fuzz/corpus/$t" "build-fuzz/artifacts/$t"
  # shellcheck disable=SC2046
  ./build-fuzz/fuzz/fuzz_"$t" $(flags "$t") -artifact_prefix="build-fuzz/artifacts/$t/" "$@" \
    "build-fuzz/corpus/$t" "fuzz/corpus/$t"
}

case "$mode" in
  build) build ;;
  smoke)
    secs=${2:-10}
    build
    failed=""
    for t in $targets; do
      log="build-fuzz/smoke_$t.log"
      if [ -d "fuzz/regressions/$t" ] && [ -n "$(ls -A "fuzz/regressions/$t")" ]; then
        # shellcheck disable=SC2046
        if ! ./build-fuzz/fuzz/fuzz_"$t" $(flags "$t") fuzz/regressions/"$t"/* > "$log" 2>&1; then
          tail -n 40 "$log"; echo "fuzz_$t failed on a regression input"; failed="$failed $t"; continue
        fi
        echo "== fuzz_$t: $(ls fuzz/regressions/"$t" | wc -l) regression input(s) pass"
      fi
      # A fixed seed: the same mutations on every machine, so that CI does not
      # turn red at random (long runs, `run`, draw their own).
      if ! run_one "$t" -seed=1 -max_total_time="$secs" > "$log" 2>&1; then
        tail -n 40 "$log"; echo "fuzz_$t failed (its input is in build-fuzz/artifacts/$t/)"; failed="$failed $t"; continue
      fi
      echo "== fuzz_$t: ${secs} s, $(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$') runs, peak $(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$') MB"
    done
    [ -z "$failed" ] || { echo "fuzz smoke: failed:$failed"; exit 1; }
    echo "fuzz smoke: every target ran clean" ;;
  run)
    t=${2:?tools/fuzz.sh run TARGET [FLAGS]}; shift 2
    [ -x "build-fuzz/fuzz/fuzz_$t" ] || build
    run_one "$t" "$@" ;;
  *) echo "usage: tools/fuzz.sh build | smoke [SECONDS] | run TARGET [FLAGS]" >&2; exit 2 ;;
esac

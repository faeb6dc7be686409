#!/usr/bin/env bash
# The sanitizer build: clang with AddressSanitizer + UndefinedBehaviorSanitizer
# (+ LeakSanitizer) in build-fuzz/, one build directory for the fuzz targets
# (tools/fuzz.sh), the CPU tests and the stage executables (docs/security.md).
#   tools/sanitize.sh configure   configure build-fuzz/ (tools/fuzz.sh calls it)
#   tools/sanitize.sh quick       build there what the CPU tests not labelled slow or
#                                 nosan run, bissl-pipeline and the fuzz targets; run
#                                 those tests and, beside them, the main job's --quick
#                                 pipeline: what CI runs (~15 min on 2 cores)
#   tools/sanitize.sh full        the same with the nosan tests too (the stage
#                                 pipelines of test_stages: ~35 min on 2 cores)
# Any sanitizer report fails the run (halt_on_error, abort_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-quick}
dir=build-fuzz
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1:check_initialization_order=1:strict_init_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Tests side by side on few cores: threads that spin while waiting starve each other.
export OMP_WAIT_POLICY=PASSIVE

configure() {
  mkdir -p "$dir"
  # -gline-tables-only: file and line in every report, at a fraction of -g's
  # compile time. CUDA off: the sanitizers see the CPU side only.
  if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
         -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only -DNDEBUG" \
         -DBISSL_CUDA=OFF -DBISSL_TESTS=ON -DBISSL_FUZZ=ON -DBISSL_SANITIZE=address,undefined \
         > "$dir/configure.log" 2>&1; then
    tail -n 30 "$dir/configure.log"; echo "tools/sanitize.sh: configuring $dir failed ($dir/configure.log)"; exit 1
  fi
}

build() {  # targets...
  if ! cmake --build "$dir" -j"$(nproc)" --target "$@" > "$dir/build.log" 2>&1; then
    grep -E "error|Error" "$dir/build.log" | head -n 30; echo "tools/sanitize.sh: the sanitizer build failed ($dir/build.log)"; exit 1
  fi
}

# The build targets the selected tests run: names from ctest's listing (labels),
# executables (the command, or an argument: a script handed the executable it
# runs) from the CTestTestfile.cmake scripts, which name them before they
# are built (ctest's own JSON leaves out commands whose files do not exist yet).
# Compared by file name against the build's targets, never by directory: cmake
# records the logical path (through symlinks), python the physical one.
targets_of() {  # label regex to exclude
  local all
  all=$(cmake --build "$dir" --target help | sed -n 's/^\.\.\. \([A-Za-z0-9_-]*\).*/\1/p')
  ctest --test-dir "$dir" -N -L cpu -LE "$1" --show-only=json-v1 | python3 -c '
import json, os, re, sys
dir, known = sys.argv[1], set(sys.argv[2].split())
names = {t["name"] for t in json.load(sys.stdin)["tests"]}
exe = {}
for root, _, files in os.walk(dir):
    if "CTestTestfile.cmake" in files:
        text = open(os.path.join(root, "CTestTestfile.cmake")).read()
        # The command and its arguments: a script may be handed the executable it runs.
        for name, args in re.findall(r"add_test\(\[=\[(.*?)\]=\]\s+((?:\"[^\"]*\"\s*)+)\)", text):
            exe[name] = [os.path.basename(a) for a in re.findall(r"\"([^\"]*)\"", args)]
missing = sorted(n for n in names if n not in exe)
if missing:
    sys.exit("tools/sanitize.sh: no command found for the tests " + " ".join(missing))
out = {a for n in names for a in exe[n] if a in known}
if not out:
    sys.exit("tools/sanitize.sh: the selected tests name no target of " + dir)
print(" ".join(sorted(out)))' "$dir" "$all"
}

run() {  # label regex to exclude
  configure
  local start=$SECONDS t0=$SECONDS
  local targets
  targets=$(targets_of "$1")
  # The main job's --quick pipeline is the longest run here: it starts as soon
  # as bissl-pipeline is built, and the tests' executables and the fuzz
  # targets (tools/fuzz.sh smoke) build beside it, then the tests run.
  build bissl-pipeline
  echo "== sanitizer build of bissl-pipeline: $((SECONDS - start)) s"
  rm -rf "$dir/quick_run"
  ./"$dir"/bissl-pipeline --config configs/pipeline_fashion_mnist.toml --quick --device cpu --out "$dir/quick_run" \
    > "$dir/quick_run.log" 2>&1 &
  local pipeline=$!
  # shellcheck disable=SC2064
  trap "kill $pipeline 2>/dev/null || true" EXIT  # a failed build or test run stops it too
  start=$SECONDS
  # shellcheck disable=SC2086
  build fuzz_all $targets
  echo "== sanitizer build of the tests and fuzz targets (beside the pipeline): $((SECONDS - start)) s"
  start=$SECONDS
  local tests_ok=0
  # (--timeout: the full suite's stage pipelines under ASan outlast ctest's default 1 500 s.)
  ctest --test-dir "$dir" -L cpu -LE "$1" --output-on-failure --timeout 3000 -j"$(nproc)" || tests_ok=$?
  echo "== sanitizer tests: $((SECONDS - start)) s"
  if ! wait "$pipeline"; then
    tail -n 60 "$dir/quick_run.log"
    echo "tools/sanitize.sh: the --quick pipeline failed under the sanitizers ($dir/quick_run.log)"; exit 1
  fi
  trap - EXIT
  echo "== sanitizer --quick pipeline: clean ($dir/quick_run/); all done $((SECONDS - t0)) s after configuring"
  [ "$tests_ok" = 0 ] || { echo "tools/sanitize.sh: tests failed under the sanitizers"; exit 1; }
}

case "$mode" in
  configure) configure ;;
  quick) run "slow|nosan" ;;
  full) run "slow" ;;
  *) echo "usage: tools/sanitize.sh configure | quick | full" >&2; exit 2 ;;
esac

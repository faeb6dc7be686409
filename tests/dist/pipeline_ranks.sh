#!/usr/bin/env bash
# The --quick pipeline on 2 ranks (ctest bissl_pipeline_ranks):
#   1. one process makes the reference run;
#   2. np 2 runs every stage after pretraining on the reference's pretrained
#      backbone (pipeline.pretrained): data-parallel loaders, reduced
#      gradients, synchronised BN, rank 0's files, stamps decided on rank 0;
#   3. where summation order cannot grow, np 2 equals one process within f32
#      rounding (rtol 1e-5): the warm-up (a linear head on frozen features,
#      measured 3.3e-7) and the upper level of the ij_discarded stage (θD and
#      φD by SGD, 9.3e-7). LARS's lower level and BiSSL's layer-wise CG
#      amplify roundings in this tiny run: one process in portable numerics
#      moves them as much as np 2 does (docs/distributed.md), so they are
#      not compared;
#   4. the same files exist in both runs;
#   5. rerunning np 2 reuses every stage, and so does np 1 on np 2's folder;
#   6. finetune.parallel = seeds on np 2: the search trials and the FT arm's
#      seeds run side by side, each as one process: bit for bit np 1's.
# usage: pipeline_ranks.sh MPIEXEC BISSL_PIPELINE SOURCE_DIR WORK_DIR
set -euo pipefail
mpiexec=$1 exe=$2 src=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
compare() { python3 "$src/tools/compare_runs.py" "$@"; }
"$exe" --quick --out "$work/np1" > "$work/np1.log" 2>&1 || { tail -20 "$work/np1.log"; exit 1; }
two=("$mpiexec" -np 2 --oversubscribe "$exe" --quick --set "pipeline.pretrained=$work/np1/pretrain" --out "$work/np2")
"${two[@]}" > "$work/np2.log" 2>&1 || { tail -20 "$work/np2.log"; echo "pipeline_ranks: np 2 failed"; exit 1; }
compare --rtol 1e-5 "$work/np1/warmup" "$work/np2/warmup"
for f in backbone_d.safetensors head_d.safetensors; do
  compare --rtol 1e-5 "$work/np1/train/ij_discarded/$f" "$work/np2/train/ij_discarded/$f"
done
files() { (cd "$1" && find . -type f ! -name '*.tmp*' ! -path './pretrain/*' | sort); }
diff <(files "$work/np1") <(files "$work/np2") || { echo "pipeline_ranks: the runs wrote other files"; exit 1; }
# Reruns: every unit reused, on 2 ranks and on 1.
cp "$work/np2/report.md" "$work/report_before.md"
"${two[@]}" > "$work/np2_again.log" 2>&1 || { tail -20 "$work/np2_again.log"; exit 1; }
"$exe" --quick --set "pipeline.pretrained=$work/np1/pretrain" --no-recompute --out "$work/np2" > "$work/np1_on_np2.log" 2>&1 ||
  { tail -20 "$work/np1_on_np2.log"; echo "pipeline_ranks: np 1 did not reuse np 2's stages"; exit 1; }
if grep -q "recomputing" "$work/np2_again.log" "$work/np1_on_np2.log"; then
  echo "pipeline_ranks: a rerun recomputed a stage"; exit 1
fi
# Side by side: trials and seeds each on one rank, the same bits as np 1.
"$mpiexec" -np 2 --oversubscribe "$exe" --quick --set "pipeline.pretrained=$work/np1/pretrain" \
  --set finetune.parallel=seeds --out "$work/np2_seeds" > "$work/np2_seeds.log" 2>&1 ||
  { tail -20 "$work/np2_seeds.log"; echo "pipeline_ranks: np 2 with finetune.parallel = seeds failed"; exit 1; }
compare "$work/np1/finetune/search" "$work/np2_seeds/finetune/search"
compare "$work/np1/finetune/ft" "$work/np2_seeds/finetune/ft"
echo "pipeline_ranks: passed"

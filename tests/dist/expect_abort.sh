#!/usr/bin/env bash
# expect_abort.sh MPIEXEC TEST_DIST: with rank 1 of 2 throwing while rank 0
# waits in a barrier, the job must exit non-zero within 60 s and say which
# rank failed (dist::Session::run, dist::abort_job).
set -u
mpiexec=$1 exe=$2
start=$(date +%s)
out=$(BISSL_TEST_THROW_ON_RANK=1 timeout 60 "$mpiexec" -np 2 --oversubscribe "$exe" 2>&1)
rc=$?
took=$(( $(date +%s) - start ))
echo "$out" | tail -n 20
echo "exit code $rc after ${took} s"
[ "$rc" -eq 124 ] && { echo "FAIL: the job hung (killed after 60 s)"; exit 1; }
[ "$rc" -eq 0 ] && { echo "FAIL: the job exited 0 although rank 1 failed"; exit 1; }
echo "$out" | grep -q "\[rank 1\] error: injected failure" || { echo "FAIL: no '[rank 1] error:' line"; exit 1; }
echo "PASS: rank 1's failure ended the job in ${took} s"

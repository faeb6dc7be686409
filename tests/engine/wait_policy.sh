#!/usr/bin/env bash
# wait_policy.sh BISSL_OPS: the wait policy chosen at start (engine/threads.h,
# choose_wait_policy) as each executable's backend line reports it. Held to
# one CPU beside a spinning process, the probe gets about half of it: it
# must call that contended and re-start the process with
# OMP_WAIT_POLICY=passive, which then runs to the end with its arguments
# intact; a policy in the environment is never overridden;
# BISSL_WAIT_PROBE=0 and one thread skip the probe; BISSL_THREADS=probe cuts
# the count to one. Two threads on that one CPU probe with one thread (no
# more probe threads than CPUs: our own oversubscription is not load).
set -u
ops=$1
unset OMP_WAIT_POLICY GOMP_SPINCOUNT BISSL_WAIT_PROBE BISSL_WAIT_CHOSEN BISSL_THREADS BISSL_THREADS_CHOSEN  # tools/test.sh sets a policy
cpu=$(taskset -pc $$ | sed 's/.*: *//; s/[,-].*//')  # the first CPU of this shell's mask
fail=0
backend() {  # env assignments..., then the policy text expected
  local want=${!#} out
  out=$(env "${@:1:$#-1}" taskset -c "$cpu" "$ops" perf -o add --reps 1 --scale 1 2>&1)
  local line
  line=$(echo "$out" | grep '"backend"')
  echo "${*:1:$#-1}: $line"
  if [[ "$line" != *"$want"* ]]; then echo "FAIL: expected '$want'"; fail=1; fi
  if ! echo "$out" | grep -q '"forward_ms"'; then echo "FAIL: no timings in the output:"; echo "$out" | tail -5; fail=1; fi
}
backend OMP_NUM_THREADS=2 "the least of 1 threads ran"  # a policy either way: other tests may share the CPU
bash -c 'while :; do :; done' &
spinner=$!
taskset -pc "$cpu" $spinner > /dev/null
trap 'kill $spinner 2> /dev/null' EXIT
backend OMP_NUM_THREADS=2 "OMP_WAIT_POLICY=passive (chosen at start: the least of 1 threads ran"
backend OMP_NUM_THREADS=2 OMP_WAIT_POLICY=active "OMP_WAIT_POLICY=active;"
backend OMP_NUM_THREADS=2 GOMP_SPINCOUNT=3000 "GOMP_SPINCOUNT=3000;"
backend OMP_NUM_THREADS=2 BISSL_WAIT_PROBE=0 "libgomp's default spin (BISSL_WAIT_PROBE=0)"
backend OMP_NUM_THREADS=1 "libgomp's default spin (one thread)"
# Opt-in: the count cut to the probe threads that got their CPU (here none: at least 1).
backend OMP_NUM_THREADS=2 BISSL_THREADS=probe "cpu (1 threads, from OMP_NUM_THREADS=2, cut by BISSL_THREADS=probe, libgomp's default spin (one thread; the least of 1 threads ran"
[ $fail -eq 0 ] && echo "PASS"
exit $fail

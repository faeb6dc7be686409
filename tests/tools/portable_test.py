#!/usr/bin/env python3
"""Portable numerics (ctest label slow): the --quick main job with
pipeline.numerics = portable must give the same results, file by file
(tools/compare_runs.py), at 1 and 2 threads and under two OpenBLAS core
types; the default mode, run the same ways, is reported beside it (its
results move with the thread count and the kernels).

The core types are the ones this CPU can run: Haswell (AVX2) and
Sandybridge (AVX); SkylakeX needs AVX-512. In portable mode the tools run
OpenBLAS's Haswell kernels whatever OPENBLAS_CORETYPE says, which is what
makes the second core type agree.

  portable_test.py <bissl-pipeline> <source dir> <work dir>
"""
import os, shutil, subprocess, sys, time

exe, src, work = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
compare = os.path.join(src, "tools/compare_runs.py")
common = [exe, "--config", os.path.join(src, "configs/pipeline_fashion_mnist.toml"), "--quick", "--device", "cpu"]

runs = {  # name: (numerics, OMP_NUM_THREADS, OPENBLAS_CORETYPE or None)
    "portable_t2": ("portable", "2", None),
    "portable_t1": ("portable", "1", None),
    "portable_snb": ("portable", "2", "Sandybridge"),
    "default_t2": ("default", "2", None),
    "default_t1": ("default", "1", None),
    "default_snb": ("default", "2", "Sandybridge"),
}
seconds = {}
for name, (mode, threads, core) in runs.items():
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=threads)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("BISSL_NUMERICS_REEXEC", None)
    if core:
        env["OPENBLAS_CORETYPE"] = core
    out = os.path.join(work, name)
    t0 = time.time()
    with open(out + ".log", "w") as f:
        rc = subprocess.run(common + ["--out", out, "--set", "pipeline.numerics=" + mode], stdout=f,
                            stderr=subprocess.STDOUT, env=env).returncode
    seconds[name] = time.time() - t0
    if rc != 0:
        print(f"FAIL: {name} exited with {rc}; see {out}.log")
        sys.exit(1)
    line = next((l.strip() for l in open(out + ".log") if l.startswith("numerics:")), "?")
    print(f"{name}: {seconds[name]:.0f} s, {line}")


def differ(a, b):
    r = subprocess.run([sys.executable, compare, os.path.join(work, a), os.path.join(work, b)], capture_output=True,
                       text=True)
    print(f"{a} vs {b}: {r.stdout.strip().splitlines()[-1]}")
    return r.returncode != 0


bad = 0
for other in ("portable_t1", "portable_snb"):
    if differ("portable_t2", other):
        print(f"FAIL: portable numerics differ between portable_t2 and {other}")
        bad += 1
moved = [o for o in ("default_t1", "default_snb") if differ("default_t2", o)]
print(f"default mode: {len(moved)} of 2 variations change the results ({', '.join(moved) or 'none'})")
print(f"portable cost: {seconds['portable_t2'] / seconds['default_t2']:.2f}x the default's run time at 2 threads")
sys.exit(1 if bad else 0)

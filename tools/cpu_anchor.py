#!/usr/bin/env python3
"""bissl beside PyTorch on the CPU, in one run on one machine (issue 16's ratio table).

Runs `bissl-bench --device cpu --only mainjob,r50b32` and, when a Python with torch is found, PyTorch's
anchors -- ../shared/bench/torch_cpu_anchor.py (the main job's shapes) and tools/torch_cpu_r50.py
(ResNet-50, 96 px, batch 32) -- alternating, `--runs` times each, at the same thread count, and prints
the medians and their ratios as a Markdown table. Then the same with 1 and 2 busy neighbours (processes
spinning on the CPU for the whole measurement): each side's slowdown over its own quiet time.
torch is for measuring only, never a build or CI dependency; without it the bissl side is still timed.

  python3 tools/cpu_anchor.py [--threads 2] [--runs 3] [--busy 0,1,2] [--torch-python PY] [--out DIR]
                              [--alt-env BISSL_THREADS=probe]

Writes cpu_anchor.json and cpu_anchor.md into --out (default build/cpu_anchor).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHOR = os.path.join(ROOT, "..", "shared", "bench", "torch_cpu_anchor.py")
R50 = os.path.join(ROOT, "tools", "torch_cpu_r50.py")

# (label, bissl key, torch key, target for bissl / torch)
ROWS = [
    ("SimCLR step, 256 pairs (main job's model)", "mainjob_simclr_step_ms", "pretrain_step_b256_ms", 0.8),
    ("NT-Xent gradient, 64 pairs", "mainjob_ntxent_grad_ms", "ntxent_grad_b64_ms", 0.8),
    ("H·v forward-over-reverse, 64 pairs", "mainjob_ntxent_hvp_ms", "ntxent_hvp_b64_ms", 0.5),
    ("ResNet-50 step, 96 px, batch 32", "r50_96px_b32_fp32_ms", "r50_96px_b32_step_ms", 1.0),
]


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def find_torch(explicit):
    cands = [explicit] if explicit else [os.path.expanduser("~/torch-venv/bin/python"), sys.executable]
    for py in cands:
        if py and os.path.exists(py) and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
            return py
    return None


def run_json(cmd, env):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"cpu_anchor: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    out = p.stdout.strip()
    return json.loads(out[out.index("{"):])  # bissl-bench prints one JSON object; the anchors one line


class Busy:
    """k processes spinning on the CPU while the block runs."""

    def __init__(self, k):
        self.k, self.procs = k, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.k)]
        time.sleep(0.5 if self.k else 0)
        return self

    def __exit__(self, *a):
        for p in self.procs:
            p.kill()
            p.wait()


def measure(args, torch_py, busy):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    bissl, torch, alt = [], [], []
    with Busy(busy):
        for r in range(args.runs):
            t0 = time.time()
            bissl.append(run_json([args.bench, "--device", "cpu", "--only", args.only, "--iters", str(args.iters),
                                   "--warm", "2"], env))
            if args.alt_env:  # the step again with extra settings (e.g. BISSL_THREADS=probe)
                alt_env = dict(env, **dict(kv.split("=", 1) for kv in args.alt_env.split(",")))
                alt.append(run_json([args.bench, "--device", "cpu", "--only", "mainjob", "--iters", str(args.iters),
                                     "--warm", "2"], alt_env))
            if torch_py:
                t = run_json([torch_py, ANCHOR, str(args.threads)], env)
                if "r50b32" in args.only:
                    t.update(run_json([torch_py, R50, str(args.threads)], env))
                torch.append(t)
            print(f"[busy {busy}] run {r + 1}/{args.runs}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)

    def med(runs, key):
        v = [x[key] for x in runs if isinstance(x.get(key), (int, float))]
        return statistics.median(v) if v else None

    keys_b = {k for x in bissl for k in x if k.endswith("_ms")}
    keys_t = {k for x in torch for k in x if k.endswith("_ms")}
    return {"bissl": {k: med(bissl, k) for k in sorted(keys_b)}, "torch": {k: med(torch, k) for k in sorted(keys_t)},
            "torch_version": torch[0].get("torch") if torch else None,
            "cpu_conv_choices": bissl[0].get("cpu_conv_choices"), "backend": bissl[0].get("backend"),
            "backends": [x.get("backend") for x in bissl],
            "alt": {k: med(alt, k) for k in sorted({k for x in alt for k in x if k.endswith("_ms")})},
            "alt_backends": [x.get("backend") for x in alt]}


def fmt(x, unit=" ms"):
    return "—" if x is None else f"{x:,.1f}{unit}".replace(",", " ")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="alternating runs of each side (medians)")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations inside each bissl-bench run")
    ap.add_argument("--busy", default="0,1,2", help="busy neighbours, comma list")
    ap.add_argument("--only", default="mainjob,r50b32", help="bissl-bench --only (busy rows: mainjob)")
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "bissl-bench"))
    ap.add_argument("--alt-env", default="", help="KEY=VALUE[,...]: also time bissl's step with these settings, "
                    "a column of the load table (e.g. BISSL_THREADS=probe)")
    ap.add_argument("--torch-python", default=None, help="a Python that imports torch (default ~/torch-venv)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "cpu_anchor"))
    args = ap.parse_args()
    if not os.path.exists(args.bench):
        sys.exit(f"cpu_anchor: {args.bench} not found (cmake --build build --target bissl-bench)")
    torch_py = find_torch(args.torch_python)
    if not torch_py:
        print("cpu_anchor: no Python with torch found (python3 -m venv ~/torch-venv && ~/torch-venv/bin/pip install "
              "torch): timing bissl only", file=sys.stderr)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    res = {"machine": f"{cpu_model()}, {os.cpu_count()} CPUs", "commit": commit + (" (modified)" if dirty else ""),
           "threads": args.threads, "date": datetime.datetime.now().isoformat(timespec="seconds"), "loads": {}}
    t_start = time.time()
    for k in [int(b) for b in args.busy.split(",") if b != ""]:
        args_k = argparse.Namespace(**vars(args))
        if k:
            args_k.only = "mainjob"  # the busy rows: the main job's shapes
        res["loads"][str(k)] = measure(args_k, torch_py, k)
    res["seconds"] = time.time() - t_start
    q = res["loads"].get("0")
    lines = [f"bissl beside PyTorch {q['torch_version'] if q and q['torch_version'] else '(not found)'} on the CPU: "
             f"{res['machine']}, {args.threads} threads, commit {res['commit']}, {res['date']}; medians of "
             f"{args.runs} alternating runs; {res['seconds']:.0f} s in all.", ""]
    if q:
        lines += ["| work | bissl | PyTorch | bissl / PyTorch | target |", "|---|---|---|---|---|"]
        for label, kb, kt, target in ROWS:
            b, t = q["bissl"].get(kb), q["torch"].get(kt)
            ratio = f"{b / t:.2f}×" if b and t else "—"
            ok = "" if not (b and t) else (" ✓" if b / t <= target else " ✗")
            lines.append(f"| {label} | {fmt(b)} | {fmt(t)} | {ratio}{ok} | ≤ {target}× |")
        g, rp = q["bissl"].get("mainjob_ntxent_grad_ms"), q["bissl"].get("mainjob_ntxent_hvp_replayed_ms")
        if g and rp:
            lines.append(f"| H·v replayed (`Linearization`), 64 pairs | {fmt(rp)} | — | {rp / g:.2f}× bissl's "
                         f"gradient{' ✓' if rp / g <= 1.5 else ' ✗'} | ≤ 1.5× own gradient |")
    busy = [k for k in res["loads"] if k != "0"]
    if q and busy:
        alt = args.alt_env and q.get("alt")
        head = "| busy neighbours | bissl | PyTorch | bissl slowdown | PyTorch slowdown |"
        if alt:
            head += f" bissl, {args.alt_env} | its slowdown (over bissl's quiet default) |"
        lines += ["", "SimCLR step under load (busy processes spinning on the same CPUs); slowdown = time / quiet time:",
                  "", head, "|" + "---|" * (head.count("|") - 1)]
        kb, kt = ROWS[0][1], ROWS[0][2]
        for k in ["0"] + busy:
            b, t = res["loads"][k]["bissl"].get(kb), res["loads"][k]["torch"].get(kt)
            sb = b / q["bissl"][kb] if b and q["bissl"].get(kb) else None
            st = t / q["torch"][kt] if t and q["torch"].get(kt) else None
            mark = "" if sb is None or st is None else (" ✓" if sb <= st else " ✗")
            row = f"| {k} | {fmt(b)} | {fmt(t)} | {fmt(sb, '×')}{mark} | {fmt(st, '×')} |"
            if alt:
                a = res["loads"][k]["alt"].get(kb)
                sa = a / q["bissl"][kb] if a and q["bissl"].get(kb) else None
                amark = "" if sa is None or st is None else (" ✓" if sa <= st else " ✗")
                row += f" {fmt(a)} | {fmt(sa, '×')}{amark} |"
            lines.append(row)
    if q and q.get("backend"):
        lines += ["", f"bissl backend: {q['backend']}"]
    # The threads and wait policy each bissl run chose at start (engine/threads.h), per load.
    for k in res["loads"]:
        for key, label in (("backends", ""), ("alt_backends", f" ({args.alt_env})")):
            seen = [b[b.index("(") + 1:b.index("; f32")] for b in res["loads"][k].get(key, [])
                    if b and "(" in b and "; f32" in b]
            if seen:
                lines.append(f"- {k} busy{label}: " + "; ".join(seen))
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "cpu_anchor.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(args.out, "cpu_anchor.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

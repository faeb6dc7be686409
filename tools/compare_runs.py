#!/usr/bin/env python3
"""Compares two pipeline output folders file by file, ignoring what may
differ between identical runs: timing fields ("seconds", "made_at", ...),
stamps, the timings/report/config text, and the metadata of checkpoints
(their tensors are compared). Exit status 1 when a result differs.

  python3 tools/compare_runs.py runs/a runs/b
"""
import json, os, struct, sys

TIMING = {"seconds", "made_at", "code", "backend", "elapsed_s", "data_wait_s", "images_per_s", "signature"}
SKIP_FILES = {"timings.json", "report.md", "config.toml", "stamp.json", "stamp.partial.json"}


def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


def same(a, b):
    name = os.path.basename(a)
    if name.endswith(".safetensors"):
        return tensors(a) == tensors(b)
    if name.endswith(".json"):
        return strip(json.load(open(a))) == strip(json.load(open(b)))
    if name.endswith(".jsonl"):
        la = [strip(json.loads(l)) for l in open(a) if l.strip()]
        lb = [strip(json.loads(l)) for l in open(b) if l.strip()]
        return la == lb
    return open(a, "rb").read() == open(b, "rb").read()


def main(a, b):
    bad = 0
    files = lambda r: {os.path.relpath(os.path.join(d, f), r) for d, _, fs in os.walk(r) for f in fs}
    fa, fb = files(a), files(b)
    for f in sorted(fa | fb):
        if os.path.basename(f) in SKIP_FILES:
            continue
        if f not in fa or f not in fb:
            print("only in", a if f in fa else b, ":", f)
            bad += 1
        elif not same(os.path.join(a, f), os.path.join(b, f)):
            print("differs:", f)
            bad += 1
    print(f"{len(fa | fb)} files, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

#!/usr/bin/env python3
"""Compares two pipeline output folders file by file, ignoring what may
differ between identical runs: timing fields ("seconds", "made_at", ...),
stamps, the timings/report/config text, and the metadata of checkpoints
(their tensors are compared). Exit status 1 when a result differs.

  python3 tools/compare_runs.py runs/a runs/b
  python3 tools/compare_runs.py --rtol 1e-4 runs/a runs/b
  python3 tools/compare_runs.py --rtol 1e-4 runs/a/x.safetensors runs/b/x.safetensors

Without --rtol results must be equal bit for bit. With it (runs that differ
only in summation order, e.g. one process against mpirun -np 2) the
floating tensors of each file, as one vector, must satisfy ||a - b|| <= rtol
* max(||a||, ||b||), and each JSON number |a - b| <= rtol * max(|a|, |b|);
the largest deviation is printed.
"""
import json, math, os, struct, sys

TIMING = {"seconds", "made_at", "code", "backend", "elapsed_s", "data_wait_s", "images_per_s", "signature",
          "ranks", "communication_seconds"}
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


RTOL = None  # --rtol
WORST = [0.0, ""]  # the largest relative deviation seen, and where


def note(dev, where):
    if dev > WORST[0]:
        WORST[0], WORST[1] = dev, where


def floats(dtype, raw):
    fmt = {"F32": "f", "F64": "d"}.get(dtype)
    if fmt is None:
        return None
    return struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)


def close_tensors(ta, tb, where):
    """The file's floating tensors as one vector: a tensor whose gradient is
    zero up to rounding (a bias before batch norm) differs relatively by far
    more than the rest and weighs nothing here."""
    if ta.keys() != tb.keys():
        return False
    nd2 = na2 = nb2 = 0.0
    for k in ta:
        (da, sa, ra), (db, sb, rb) = ta[k], tb[k]
        if da != db or sa != sb:
            return False
        xa, xb = floats(da, ra), floats(db, rb)
        if xa is None:
            if ra != rb:
                return False
            continue
        nd2 += sum((x - y) ** 2 for x, y in zip(xa, xb))
        na2 += sum(x * x for x in xa)
        nb2 += sum(y * y for y in xb)
    nm = max(math.sqrt(na2), math.sqrt(nb2), 1e-300)
    note(math.sqrt(nd2) / nm, where)
    return math.sqrt(nd2) <= RTOL * nm


def close_json(a, b, where):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close_json(a[k], b[k], where + "." + k) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close_json(x, y, where) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == b:
            return True
        dev = abs(a - b) / max(abs(a), abs(b))
        note(dev, where)
        return dev <= RTOL
    return a == b


def same(a, b):
    name = os.path.basename(a)
    if name.endswith(".safetensors"):
        ta, tb = tensors(a), tensors(b)
        return ta == tb if RTOL is None else close_tensors(ta, tb, name)
    if name.endswith(".json") or name.endswith(".jsonl"):
        if name.endswith(".json"):
            ja, jb = strip(json.load(open(a))), strip(json.load(open(b)))
        else:
            ja = [strip(json.loads(l)) for l in open(a) if l.strip()]
            jb = [strip(json.loads(l)) for l in open(b) if l.strip()]
        return ja == jb if RTOL is None else close_json(ja, jb, name)
    return open(a, "rb").read() == open(b, "rb").read()


def main(a, b):
    if os.path.isfile(a) and os.path.isfile(b):  # two files
        ok = same(a, b)
        print(("same: " if ok else "differs: ") + a)
        if RTOL is not None:
            print(f"largest relative deviation: {WORST[0]:.3g}")
        return 0 if ok else 1
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
    if RTOL is not None:
        print(f"largest relative deviation: {WORST[0]:.3g}" + (f" ({WORST[1]})" if WORST[1] else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--rtol"]:
        RTOL = float(args[1])
        args = args[2:]
    if len(args) != 2:
        sys.exit("usage: compare_runs.py [--rtol R] RUN_A RUN_B")
    sys.exit(main(args[0], args[1]))

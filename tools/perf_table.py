#!/usr/bin/env python3
"""Prints bissl-ops perf JSON (argv[1]) as a table: op, case, forward and
forward+backward milliseconds, and the forward rate."""
import json
import sys

d = json.load(open(sys.argv[1]))
print(d["backend"])
print(f"{'op':26s} {'case':22s} {'fwd ms':>9s} {'fwd+bwd ms':>11s} {'rate':>12s}")
for r in d["results"]:
    if "forward_gflops" in r:
        rate = f"{r['forward_gflops']:.0f} GFLOP/s"
    else:
        rate = f"{r['forward_gbps']:.1f} GB/s"
    print(f"{r['op']:26s} {r['case']:22s} {r['forward_ms']:9.3f} {r['forward_backward_ms']:11.3f} {rate:>12s}")

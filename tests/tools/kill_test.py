#!/usr/bin/env python3
"""Crash-safety of the pipeline (ctest label slow): the --quick main job
killed with SIGKILL at many moments spread over its whole run, each restart
resuming, then run to the end, must give every result file of an
uninterrupted run (tools/compare_runs.py: timing fields aside).

The kill moments follow the run's own progress: for each stage banner
("==== pretraining ====", ...) the process is killed at several delays after
that banner appears (30 planned kills; at least 12 must land), so every stage is hit early and late,
checkpoints and reports included (pretraining and BiSSL checkpoint every few
steps here, so resumes from a checkpoint are exercised too).

  kill_test.py <bissl-pipeline> <source dir> <work dir>
"""
import os, queue, re, shutil, signal, subprocess, sys, threading, time

exe, src, work = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
common = [exe, "--config", os.path.join(src, "configs/pipeline_fashion_mnist.toml"), "--quick", "--device", "cpu",
          "--set", "pretrain.output.checkpoint_every=8", "--set", "bissl.checkpoint_every=1"]
env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")


def run(out, log):
    with open(log, "w") as f:
        return subprocess.run(common + ["--out", out], stdout=f, stderr=subprocess.STDOUT, env=env).returncode


t0 = time.time()
assert run(os.path.join(work, "ref"), os.path.join(work, "ref.log")) == 0, "the uninterrupted run failed"
print(f"uninterrupted run: {time.time() - t0:.1f} s", flush=True)

banners = ["pretraining", "fine-tuning hyper-parameter search", "head warm-up", "training stage: bissl",
           "training stage: ij_discarded", "fine-tuning: ft", "fine-tuning: bissl", "fine-tuning: ij_discarded",
           "evaluation"]
delays = [0.05, 0.8, 2.0]
plan = [(b, d) for b in banners for d in delays]
# Later kills inside the stages that resume from checkpoints.
plan[3:3] = [("pretraining", 3.5), ("pretraining", 5.0)]
plan.insert(plan.index(("training stage: bissl", 2.0)) + 1, ("training stage: bissl", 4.0))
out = os.path.join(work, "killed")
kills = []
for attempt, (banner, delay) in enumerate(plan):
    p = subprocess.Popen(common + ["--out", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    lines = queue.Queue()

    def reader():
        buf = b""
        while True:
            ch = p.stdout.read(1)
            if not ch:
                break
            if ch in b"\r\n":
                lines.put(buf.decode(errors="replace"))
                buf = b""
            else:
                buf += ch
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    seen, last = False, ""
    while True:
        try:
            line = lines.get(timeout=120)
        except queue.Empty:
            line = None
        if line is None:
            break
        last = line or last
        if f"==== {banner} ====" in line:
            seen = True
            break
    if seen:
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
            # Drain what it printed last.
            while True:
                try:
                    l = lines.get(timeout=1)
                except queue.Empty:
                    break
                if l is None:
                    break
                last = l or last
            kills.append((banner, delay, last.strip()[:100]))
            print(f"kill {len(kills):2d}: {delay:.2f} s after '{banner}' (last line: {last.strip()[:90]})", flush=True)
            continue
    p.wait()
    print(f"attempt {attempt}: the run ended by itself (exit {p.returncode}) before the kill after '{banner}'", flush=True)
    assert p.returncode == 0, "an interrupted run's restart failed"

assert len(kills) >= 12, f"only {len(kills)} kills landed"
assert run(out, os.path.join(work, "final.log")) == 0, "the final run after the kills failed"
print(f"{len(kills)} kills, {time.time() - t0:.0f} s in all; comparing with the uninterrupted run", flush=True)
rc = subprocess.run([sys.executable, os.path.join(src, "tools/compare_runs.py"), os.path.join(work, "ref"), out]).returncode
if rc == 0:
    shutil.rmtree(work, ignore_errors=True)
sys.exit(rc)

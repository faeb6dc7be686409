#!/usr/bin/env python3
"""`bissl-inspect upper` against the BiSSL authors' own implicit-gradient code.

The audit (../shared/notes/REFERENCE_AUDIT.md) matched our ∇θP L_D, head
gradient and H·rhs to the reference's functions, but could not compare u or
the assembled upper gradient: no command of ours wrote them. This script
does, for one upper step:

  * builds a torchvision ResNet-18 (CIFAR stem, fc removed) as θP, θD = θP +
    noise, the pretext heads (SimCLR's projector, or BYOL's projector and
    predictor, the reference's MLPProjector layout), φD = Linear(512, C), a
    pretext batch (two views) and a downstream batch, in f64, and writes them
    as safetensors;
  * computes the step in PyTorch the way the reference's trainer does
    (`source/bissl/bissl_trainer.py`, `_upper_train_loop`): rhs and the φD
    gradient of CE(φD(θP(x)), y), u = IJGradCalc(cg_solver)(pretext batch,
    rhs, λ) with the reference's constants (λ = 0.001, damping 10, 5
    layer-wise iterations), θD's gradient u + ∇θD CE(φD(θD(x)), y), φD's the
    sum of both heads' gradients, then clip_grad_norm_ — with IJGradCalc and
    cg_solver imported from the reference's source tree (--reference, a
    checkout of github.com/NIPS25-16372/NIPS25_16372_BiSSL), not rewritten;
  * runs `bissl-inspect upper` on the same files and prints the largest
    relative differences per quantity.

--world 1 (default): one device, whole-batch BN on both sides
(--ghost-lower 0 --ghost-upper 0), the reference's per-device statistics on
one device; the cases ntxent and byol.

--world W > 1: the reference's W-device run, reproduced on one device. W
processes (gloo on this machine) each run the reference's upper step on
their shard (rank r: rows [r·b, (r+1)·b) of each view and of the downstream
batch, b = N/W), its SimCLR criterion built from the reference's own
FullGatherLayer and NTXent (source/models/{misc,simclr}.py; needs timm),
its IJGradCalc averaging rhs and every product over ranks, and its
_update_grad averaging the gradients before the clip. bissl runs `upper`
with --reference-devices W and ghost BN of b (per-device statistics), and
once with the exact H (--reference-devices 1) as the control that must
differ. The case ntxent.

    ~/torch-venv/bin/python tools/compare_reference_upper.py --bissl build/bissl-inspect \\
        --reference /path/to/NIPS25_16372_BiSSL
"""
import argparse
import copy
import importlib.util
import os
import subprocess
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_torch import byol_loss, mlp, nt_xent, randomise_bn  # noqa: E402

torch.set_default_dtype(torch.float64)


def load_reference(root):
    path = os.path.join(root, "source", "bissl", "ij_solvers.py")
    if not os.path.exists(path):
        sys.exit(f"--reference {root}: no source/bissl/ij_solvers.py (a checkout of NIPS25_16372_BiSSL expected)")
    spec = importlib.util.spec_from_file_location("reference_ij_solvers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_reference_models(root):
    """The reference's FullGatherLayer and NTXent (importing timm through misc.py)."""
    sys.path.insert(0, root)
    from source.models.misc import FullGatherLayer  # noqa: E402
    from source.models.simclr import NTXent  # noqa: E402
    return FullGatherLayer, NTXent


def rank_main(rank, world, args, d, n, port):
    """One of the reference's W processes: its upper step on this rank's shard."""
    import torch.distributed as dist
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    ref_mod = load_reference(args.reference)
    FullGatherLayer, NTXent = load_reference_models(args.reference)
    theta_p, theta_d, head, phi_d = build_models(d)
    pretext = load_file(os.path.join(d, "pretext.safetensors"))["images"]
    ds = load_file(os.path.join(d, "downstream.safetensors"))
    b = n // world
    rows = slice(rank * b, (rank + 1) * b)
    v1, v2 = pretext[:n][rows], pretext[n:][rows]
    x, y = ds["images"][rows], ds["labels"][rows]
    nt_xent_ref = NTXent(tau=0.5, distributed=True)

    def criterion(pair):  # the reference's SimCLR.forward with distributed=True
        a = head["projector"](theta_p(pair[0]))
        c = head["projector"](theta_p(pair[1]))
        z = torch.cat(FullGatherLayer.apply(torch.cat((a, c), dim=0)))
        loss, _ = nt_xent_ref(z)
        return loss

    def average(ts):
        out = []
        for t in ts:
            t = t.detach().clone().contiguous()
            dist.all_reduce(t)
            out.append(t / world)
        return out

    ps = tuple(theta_p.parameters())
    loss_p = F.cross_entropy(phi_d(theta_p(x)), y)
    head_p = torch.autograd.grad(loss_p, tuple(phi_d.parameters()), retain_graph=True)
    rhs_local = torch.autograd.grad(loss_p, ps)
    rhs = average(rhs_local)  # what IJGradCalc solves with (it all-reduces its argument in place)
    directions = []  # the directions CG multiplies, recorded around the reference's own cg_solver

    def traced_cg(mvp_fn, vecs, **kw):
        def mvp(ds):
            directions.append([t.detach().clone() for t in ds])
            return mvp_fn(ds)
        return ref_mod.cg_solver(mvp, vecs, **kw)

    solver = ref_mod.IJGradCalc(
        solver=traced_cg, parameters=ps, criterion=criterion, lam_dampening=args.delta,
        solver_kwargs={"iter_num": 5, "layerwise_solve": True})
    u = solver((v1, v2), tuple(t.clone() for t in rhs_local), 0.001)
    # H·rhs as hpid_v_p forms it on W devices: local double backward, then averaged.
    grads = torch.autograd.grad(criterion((v1, v2)), ps, create_graph=True)
    hrhs = average(torch.autograd.grad(sum((gr * v).sum() for gr, v in zip(grads, rhs)), ps))
    loss_d = F.cross_entropy(phi_d(theta_d(x)), y)
    g_d = torch.autograd.grad(loss_d, tuple(theta_d.parameters()), retain_graph=True)
    g_head = torch.autograd.grad(loss_d, tuple(phi_d.parameters()))
    # _update_grad: the assembled gradients averaged over ranks, then the clip.
    grad_d = average([a + c for a, c in zip(u, g_d)])
    grad_head = average([a + c for a, c in zip(head_p, g_head)])
    upper_params = list(theta_d.parameters()) + list(phi_d.parameters())
    for p, gr in zip(upper_params, grad_d + grad_head):
        p.grad = gr.clone()
    torch.nn.utils.clip_grad_norm_(upper_params, args.clip)
    names = [k for k, _ in theta_p.named_parameters()]
    hnames = [k for k, _ in phi_d.named_parameters()]
    out = {"loss_p": average([loss_p])[0], "loss_d": average([loss_d])[0]}
    for q, ts, nm in (("rhs", rhs, names), ("head_p", average(head_p), hnames), ("hvp_rhs", hrhs, names),
                      ("u", u, names), ("grad_d", grad_d, names), ("grad_head", grad_head, hnames),
                      ("grad_d_clipped", [p.grad for p in theta_d.parameters()], names),
                      ("grad_head_clipped", [p.grad for p in phi_d.parameters()], hnames)):
        out.update({q + "." + k: t.detach().contiguous() for k, t in zip(nm, ts)})
    for k, ds_k in enumerate(directions):
        out.update({f"cg.{k}.d.{nm}": t.contiguous() for nm, t in zip(names, ds_k)})
    if rank == 0:
        save_file(out, os.path.join(d, f"reference_w{world}.safetensors"))
    dist.destroy_process_group()


def cifar_resnet18():
    """torchvision's ResNet-18 with the CIFAR stem (3x3/1 conv, no max-pool) and no classifier."""
    m = torchvision.models.resnet18()
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    return m


def build_models(d):
    """θP, θD, the pretext heads and φD from the case's files (torchvision ResNet-18, CIFAR stem)."""
    w = load_file(os.path.join(d, "weights.safetensors"))
    theta_p, theta_d = cifar_resnet18(), cifar_resnet18()
    theta_p.load_state_dict({k: v for k, v in w.items() if not k.startswith("head.")})
    theta_d.load_state_dict(load_file(os.path.join(d, "weights_d.safetensors")))
    head = nn.ModuleDict({"projector": mlp(512, [256, 256, 128])})
    head.load_state_dict({k[5:]: v for k, v in w.items() if k.startswith("head.")})
    hd = load_file(os.path.join(d, "head_d.safetensors"))
    phi_d = nn.Linear(hd["weight"].shape[1], hd["weight"].shape[0])
    phi_d.load_state_dict(hd)
    for m in (theta_p, theta_d, head, phi_d):
        m.train()
    return theta_p, theta_d, head, phi_d


def run_world(args, g):
    """The reference on W processes against bissl's one-device W option (ntxent)."""
    import torch.multiprocessing as mp
    world, n = args.world, args.batch
    if n % world:
        sys.exit(f"--batch {n} must be a multiple of --world {world}")
    d = os.path.join(args.workdir, f"ntxent_w{world}")
    os.makedirs(d, exist_ok=True)
    write_case(d, "ntxent", args, g)
    mp.spawn(rank_main, args=(world, args, d, n, 29500 + os.getpid() % 1000), nprocs=world, join=True)
    ref = load_file(os.path.join(d, f"reference_w{world}.safetensors"))
    b = str(n // world)
    common = ["--ghost-lower", b, "--ghost-upper", b]
    got, cmd = run_bissl(d, "ntxent", ["--projector", "256-256-128"], args,
                         common + ["--reference-devices", str(world), "--trace"], "bissl_w.safetensors")
    exact, _ = run_bissl(d, "ntxent", ["--projector", "256-256-128"], args, common, "bissl_exact.safetensors")
    worst = 0.0
    for label, out in ((f"bissl --reference-devices {world}", got), ("bissl exact H (control)", exact)):
        row = []
        for q in ("loss_p", "loss_d", "rhs", "head_p", "hvp_rhs", "u", "grad_d", "grad_head", "grad_d_clipped",
                  "grad_head_clipped"):
            keys = [k for k in ref if k == q or k.startswith(q + ".")]
            floor = 1e-6 * max(ref[k].abs().max().item() for k in keys)
            e = max(rel_diff(out[k], ref[k], floor) for k in keys)
            if out is got:
                worst = max(worst, e)
            row.append(f"{q} {e:.1e}")
        curv = out["cg.curvature"]
        print(f"{label}: CG Rayleigh quotients in [{curv.min().item():.2f}, {curv.max().item():.2f}]\n    "
              + "  ".join(row))
    # Where u's difference comes from: CG's directions, iteration by iteration
    # (rounding in the first product, amplified by the recurrences).
    row = []
    for k in range(5):
        keys = [q for q in ref if q.startswith(f"cg.{k}.d.")]
        if keys and all(q in got for q in keys):
            a = torch.cat([got[q].flatten() for q in keys])
            r = torch.cat([ref[q].flatten() for q in keys])
            row.append(f"d{k} {((a - r).norm() / r.norm()).item():.1e}")
    print("CG directions, ‖bissl − reference‖/‖reference‖: " + "  ".join(row))
    return worst, cmd


def rel_diff(a, b, floor):
    scale = max(b.abs().max().item(), floor)
    return (a - b).abs().max().item() / max(scale, 1e-300)


def write_case(d, loss_name, args, g):
    """Random θP, θD = θP + noise, heads, φD and the two batches, as safetensors in d; returns the models."""
    n, size, classes = args.batch, args.image_size, 5
    theta_p = cifar_resnet18()
    randomise_bn(theta_p, g)
    theta_d = copy.deepcopy(theta_p)
    with torch.no_grad():
        for p in theta_d.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    head = nn.ModuleDict({"projector": mlp(512, [256, 256, 128])})
    if loss_name == "byol":
        head["predictor"] = mlp(128, [256, 128])
    randomise_bn(head, g)
    phi_d = nn.Linear(512, classes)
    pretext = torch.randn(2 * n, 3, size, size, generator=g)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    weights = {k: v.clone() for k, v in theta_p.state_dict().items()}
    weights.update({"head." + k: v.clone() for k, v in head.state_dict().items()})
    save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(d, "weights.safetensors"))
    save_file({k: v.contiguous() for k, v in theta_d.state_dict().items()}, os.path.join(d, "weights_d.safetensors"))
    save_file({k: v.contiguous() for k, v in phi_d.state_dict().items()}, os.path.join(d, "head_d.safetensors"))
    save_file({"images": pretext}, os.path.join(d, "pretext.safetensors"))
    save_file({"images": x, "labels": y}, os.path.join(d, "downstream.safetensors"))
    for m in (theta_p, theta_d, head, phi_d):
        m.train()
    return theta_p, theta_d, head, phi_d, pretext, x, y


def run_bissl(d, loss_name, flags, args, extra, out_name):
    out = os.path.join(d, out_name)
    f = lambda k: os.path.join(d, k + ".safetensors")
    cmd = [args.bissl, "upper", "--model", "resnet18", "--stem", "cifar", "--loss", loss_name, *flags,
           "--dtype", "f64", "--weights", f("weights"), "--input", f("pretext"), "--weights-d", f("weights_d"),
           "--head-d", f("head_d"), "--downstream", f("downstream"), "--clip", str(args.clip),
           "--delta", repr(args.delta), *extra, "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{loss_name}: bissl-inspect failed:\n{' '.join(cmd)}\n{r.stderr}")
    return load_file(out), " ".join(cmd)


def run_case(loss_name, args, ref_mod, g):
    d = os.path.join(args.workdir, loss_name)
    os.makedirs(d, exist_ok=True)
    n = args.batch
    theta_p, theta_d, head, phi_d, pretext, x, y = write_case(d, loss_name, args, g)
    flags = ["--projector", "256-256-128"] + (["--predictor", "256-128"] if loss_name == "byol" else [])
    if loss_name == "byol":
        target_bb, target_proj = copy.deepcopy(theta_p), copy.deepcopy(head["projector"])

    def criterion(batch):  # L_P on the fixed batch: image i and i + N are the two views
        v1, v2 = batch[:n], batch[n:]
        if loss_name == "ntxent":
            return nt_xent(head["projector"](theta_p(v1)), head["projector"](theta_p(v2)), 0.5)
        p1 = head["predictor"](head["projector"](theta_p(v1)))
        p2 = head["predictor"](head["projector"](theta_p(v2)))
        with torch.no_grad():
            t1, t2 = target_proj(target_bb(v1)), target_proj(target_bb(v2))
        return byol_loss(p1, p2, t1, t2)

    # The reference's upper step (bissl_trainer.py, _upper_train_loop), one device.
    ps = tuple(theta_p.parameters())
    loss_p = F.cross_entropy(phi_d(theta_p(x)), y)
    head_p = torch.autograd.grad(loss_p, tuple(phi_d.parameters()), retain_graph=True)
    rhs = torch.autograd.grad(loss_p, ps)
    solver = ref_mod.IJGradCalc(
        solver=ref_mod.cg_solver, parameters=ps, criterion=criterion, lam_dampening=args.delta,
        solver_kwargs={"iter_num": 5, "layerwise_solve": True})
    u = solver(pretext, rhs, 0.001)
    # H·rhs as the reference's hpid_v_p forms it (double backward), for the first CG product.
    grads = torch.autograd.grad(criterion(pretext), ps, create_graph=True)
    hrhs = torch.autograd.grad(sum((gr * v).sum() for gr, v in zip(grads, rhs)), ps)
    loss_d = F.cross_entropy(phi_d(theta_d(x)), y)
    g_d = torch.autograd.grad(loss_d, tuple(theta_d.parameters()), retain_graph=True)
    g_head = torch.autograd.grad(loss_d, tuple(phi_d.parameters()))
    for p, a, b in zip(theta_d.parameters(), u, g_d):
        p.grad = a + b
    for p, a, b in zip(phi_d.parameters(), head_p, g_head):
        p.grad = a + b
    upper_params = list(theta_d.parameters()) + list(phi_d.parameters())
    before = {p: p.grad.clone() for p in upper_params}
    norm = torch.nn.utils.clip_grad_norm_(upper_params, args.clip).item()

    names = [k for k, _ in theta_p.named_parameters()]
    hnames = [k for k, _ in phi_d.named_parameters()]
    ref = {"loss_p": {"": loss_p.detach()}, "loss_d": {"": loss_d.detach()},
           "rhs": dict(zip(names, rhs)), "head_p": dict(zip(hnames, head_p)), "hvp_rhs": dict(zip(names, hrhs)),
           "u": dict(zip(names, u)),
           "grad_d": {k: before[p] for k, p in zip(names, theta_d.parameters())},
           "grad_head": {k: before[p] for k, p in zip(hnames, phi_d.parameters())},
           "grad_d_clipped": {k: p.grad for k, p in zip(names, theta_d.parameters())},
           "grad_head_clipped": {k: p.grad for k, p in zip(hnames, phi_d.parameters())}}

    got, cmd = run_bissl(d, loss_name, flags, args, ["--ghost-lower", "0", "--ghost-upper", "0"],
                         "bissl_upper.safetensors")
    worst = 0.0
    row = []
    for q, tensors in ref.items():
        floor = 1e-6 * max(t.abs().max().item() for t in tensors.values())
        e = max(rel_diff(got[q if k == "" else q + "." + k], t.detach(), floor) for k, t in tensors.items())
        worst = max(worst, e)
        row.append(f"{q} {e:.1e}")
    curv = got["cg.curvature"]
    print(f"{loss_name:7s} ‖u‖ {torch.sqrt(sum((t * t).sum() for t in u)).item():.3e}  grad norm {norm:.3e}  "
          f"CG ‖r_5‖/‖r_0‖ {(got['cg.residuals'][-1] / got['cg.residuals'][0]).item():.1e}  Rayleigh quotients of "
          f"I + H/(λ+δ) in [{curv.min().item():.2f}, {curv.max().item():.2f}]\n        " + "  ".join(row))
    return worst, cmd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bissl", default="build/bissl-inspect", help="the bissl-inspect executable")
    ap.add_argument("--reference", required=True, help="a checkout of NIPS25-16372/NIPS25_16372_BiSSL")
    ap.add_argument("--workdir", default="/tmp/bissl_compare_reference_upper")
    ap.add_argument("--cases", default="ntxent,byol")
    ap.add_argument("--batch", type=int, default=8, help="downstream batch; the pretext batch has 2 x this many images")
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=10.0, help="δ, the reference's lam_dampening (its default 10)")
    ap.add_argument("--tol", type=float, default=1e-9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--world", type=int, default=1, help="W > 1: the reference on W processes (ntxent)")
    args = ap.parse_args()
    ref_mod = load_reference(args.reference)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    print(f"torch {torch.__version__} (f64), torchvision {torchvision.__version__}; the reference's IJGradCalc and "
          f"cg_solver from {args.reference}; bissl f64; relative difference = max|bissl - torch| / max|torch| per "
          f"tensor (floor 1e-6 of the largest of its kind), worst per quantity")
    worst, last = 0.0, ""
    if args.world > 1:
        worst, last = run_world(args, g)
    else:
        for case in args.cases.split(","):
            e, last = run_case(case, args, ref_mod, g)
            worst = max(worst, e)
    print(f"worst relative difference {worst:.1e} (bound {args.tol:.0e}); last command:\n  {last}")
    sys.exit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()

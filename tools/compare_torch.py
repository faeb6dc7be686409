#!/usr/bin/env python3
"""bissl vs PyTorch, number by number: loss, gradient and H·v (docs/inspect.md).

For each case this writes weights, a batch and a direction as safetensors
(PyTorch layout), computes loss, ∇L and H·v in PyTorch (f64, double
backward), runs `bissl-inspect hvp` (or `grad`) on the same files and prints
the largest relative differences:

    max over tensors of max|bissl − torch| / max(max|torch|, 1e-6·M)

(each tensor on its own scale; M, the largest magnitude among all gradients
or all H·v, keeps tensors that are zero in exact arithmetic from comparing
rounding noise with rounding noise).

Cases are ARCH_LOSS_MODE: ARCH r18 (torchvision resnet18), r18cifar (its
conv1 swapped for a 3x3/1 conv, no max-pool) or vit (a 2-block ViT-Tiny,
32 px, patch 8, written after timm's ViT and MAE's models_mae.py); LOSS ce,
ntxent, byol (the two halves of the batch, heads fixed, H·v w.r.t. the
backbone) or mae (vit only, a given mask); MODE train or eval.

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch torchvision safetensors \\
        --index-url https://download.pytorch.org/whl/cpu
    /tmp/tv/bin/python tools/compare_torch.py --bissl build/bissl-inspect
"""
import argparse
import copy
import math
import os
import subprocess
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file, save_file

torch.set_default_dtype(torch.float64)


# ---------------------------------------------------------------- heads ----

def mlp(in_dim, widths):
    """The reference MLPProjector: Linear+BN+ReLU for all but the last Linear (no bias)."""
    layers, prev = [], in_dim
    for w in widths[:-1]:
        layers += [nn.Linear(prev, w), nn.BatchNorm1d(w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, widths[-1], bias=False))
    return nn.Sequential(*layers)


def randomise_bn(m, g):
    # Non-trivial affine parameters and running statistics, so eval mode means something.
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                mod.weight.copy_(1 + 0.2 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(1 + 0.5 * torch.rand(mod.running_var.shape, generator=g))


# ------------------------------------------------------ ViT and MAE (timm / MAE names) ----

class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        o = a.softmax(-1) @ v
        return self.proj(o.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, p, c, d):
        super().__init__()
        self.proj = nn.Conv2d(c, d, p, p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    def __init__(self, size, p, c, d, depth, heads, classes, learned_pos=True):
        super().__init__()
        n = (size // p) ** 2
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + n, d), requires_grad=learned_pos)
        self.patch_embed = PatchEmbed(p, c, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes) if classes else None

    def features(self, x, ids_keep=None):
        t = self.patch_embed(x) + self.pos_embed[:, 1:]
        if ids_keep is not None:
            t = torch.gather(t, 1, ids_keep.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(t.shape[0], -1, -1)
        return self.norm(self.blocks(torch.cat([cls, t], 1)))

    def forward(self, x):
        f = self.features(x)[:, 0]
        return self.head(f) if self.head is not None else f


class MaeDecoder(nn.Module):
    def __init__(self, n, d_enc, dd, depth, heads, patch_dim):
        super().__init__()
        self.mask_token = nn.Parameter(0.02 * torch.randn(1, 1, dd))
        self.decoder_pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + n, dd), requires_grad=False)
        self.decoder_embed = nn.Linear(d_enc, dd)
        self.decoder_blocks = nn.Sequential(*[Block(dd, heads) for _ in range(depth)])
        self.decoder_norm = nn.LayerNorm(dd, eps=1e-6)
        self.decoder_pred = nn.Linear(dd, patch_dim)

    def forward(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        n, l = ids_restore.shape
        mt = self.mask_token.expand(n, l + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:], mt], 1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], x_], 1) + self.decoder_pos_embed
        return self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))[:, 1:]


def patchify(imgs, p):
    n, c, h, w = imgs.shape
    x = imgs.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)


def mae_loss(enc, dec, imgs, mask, p):
    ids_shuffle = torch.argsort(mask, dim=1, stable=True)  # visible (0) first, each group ascending
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    k = int((mask[0] == 0).sum())
    latent = enc.features(imgs, ids_shuffle[:, :k])
    pred = dec(latent, ids_restore)
    t = patchify(imgs, p)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5
    per = ((pred - t) ** 2).mean(-1)
    return (per * mask).sum() / mask.sum()


# ---------------------------------------------------------------- losses ----

def nt_xent(z1, z2, tau):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.T / tau
    s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool), -1e9)
    target = (torch.arange(2 * n) + n) % (2 * n)
    return F.cross_entropy(s, target)


def byol_loss(p1, p2, t1, t2):
    cos = lambda a, b: (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)
    return (4 - 2 * (cos(p1, t2) + cos(p2, t1))).mean()


# ---------------------------------------------------------------- cases ----

def run_case(name, args, g):
    d = os.path.join(args.workdir, name)
    os.makedirs(d, exist_ok=True)
    n = args.batch
    arch, loss_name, mode = name.split("_")
    flags, head = [], None
    if arch.startswith("r18"):
        size = args.image_size
        model = torchvision.models.resnet18(num_classes=10)
        flags = ["--model", "resnet18"]
        if arch == "r18cifar":  # 3x3/1 stem, no max-pool
            model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            model.maxpool = nn.Identity()
            flags += ["--stem", "cifar"]
        randomise_bn(model, g)
        images = torch.randn(n, 3, size, size, generator=g)
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        if loss_name != "ce":
            model.fc = nn.Identity()
        feat = 512
    else:  # ViT-Tiny, 2 blocks, 32 px, patch 8
        size, p = 32, 8
        mae = loss_name == "mae"
        model = ViT(size, p, 3, 192, 2, 3, 10 if loss_name == "ce" else 0, learned_pos=not mae)
        images = torch.randn(n, 3, size, size, generator=g)
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        flags = ["--model", "vit_tiny", "--vit-depth", "2", "--image-size", str(size), "--patch-size", str(p)]
        feat = 192
        if mae:
            head = MaeDecoder((size // p) ** 2, 192, 64, 1, 2, p * p * 3)
            weights.update({k: v.clone() for k, v in head.state_dict().items()})
            flags += ["--decoder-dim", "64", "--decoder-depth", "1", "--decoder-heads", "2"]
            L = (size // p) ** 2
            mask = torch.stack([torch.randperm(L, generator=g) for _ in range(n)]).ge(L // 4).double()
    if loss_name in ("ntxent", "byol"):
        proj = mlp(feat, [256, 256, 256])
        randomise_bn(proj, g)
        head = nn.ModuleDict({"projector": proj})
        if loss_name == "byol":
            pred = mlp(256, [256, 256])
            randomise_bn(pred, g)
            head["predictor"] = pred
            flags += ["--predictor", "256-256"]
        weights.update({"head." + k: v.clone() for k, v in head.state_dict().items()})
    for m in [model] + ([head] if head is not None else []):
        m.train(mode == "train")
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    direction = {k: torch.randn(p.shape, generator=g) for k, p in params.items()}
    labels = torch.randint(0, 10, (n,), generator=g)
    batch = {"images": images, "labels": labels}
    if loss_name == "mae":
        batch["mask"] = mask

    save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(d, "weights.safetensors"))
    save_file(batch, os.path.join(d, "batch.safetensors"))
    save_file(direction, os.path.join(d, "direction.safetensors"))

    if loss_name == "byol":
        target_bb, target_proj = copy.deepcopy(model), copy.deepcopy(head["projector"])

    def loss_fn():
        if loss_name == "ce":
            return F.cross_entropy(model(images), labels)
        if loss_name == "mae":
            return mae_loss(model, head, images, mask, 8)
        v1, v2 = images[: n // 2], images[n // 2:]
        if loss_name == "ntxent":
            return nt_xent(head["projector"](model(v1)), head["projector"](model(v2)), 0.5)
        p1 = head["predictor"](head["projector"](model(v1)))
        p2 = head["predictor"](head["projector"](model(v2)))
        with torch.no_grad():
            t1, t2 = target_proj(target_bb(v1)), target_proj(target_bb(v2))
        return byol_loss(p1, p2, t1, t2)

    keys = list(params)
    ps = [params[k] for k in keys]
    loss = loss_fn()
    grads = torch.autograd.grad(loss, ps, create_graph=True)
    hv = torch.autograd.grad(grads, ps, grad_outputs=[direction[k] for k in keys])
    ref = {"loss": loss.detach()}
    ref.update({"grad." + k: x.detach() for k, x in zip(keys, grads)})
    ref.update({"hvp." + k: x.detach() for k, x in zip(keys, hv)})

    out = os.path.join(d, "bissl.safetensors")
    cmd = [args.bissl, "hvp", *flags, "--loss", loss_name, "--mode", mode, "--dtype", args.dtype,
           "--weights", os.path.join(d, "weights.safetensors"), "--input", os.path.join(d, "batch.safetensors"),
           "--direction", os.path.join(d, "direction.safetensors"), "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{name}: bissl-inspect failed:\n{' '.join(cmd)}\n{r.stderr}")
    got = load_file(out)

    def worst(prefix):
        # Each tensor on its own scale, floored at 1e-6 of the largest of its
        # kind: a gradient that is zero in exact arithmetic (e.g. the bias of
        # a LayerNorm followed by a Linear and a train-mode BatchNorm) is
        # rounding noise on both sides.
        w, at = 0.0, ""
        floor = 1e-6 * max(t.abs().max().item() for k, t in ref.items() if k.startswith(prefix))
        for k, t in ref.items():
            if not k.startswith(prefix):
                continue
            scale = max(t.abs().max().item(), floor)
            e = (got[k] - t).abs().max().item() / max(scale, 1e-300)
            if e > w:
                w, at = e, k
        return w, at

    l_err = abs(got["loss"].item() - ref["loss"].item()) / abs(ref["loss"].item())
    g_err, g_at = worst("grad.")
    h_err, h_at = worst("hvp.")
    print(f"{name:16s} loss {ref['loss'].item(): .10f}  rel.diff loss {l_err:.1e}  grad {g_err:.1e}  "
          f"H·v {h_err:.1e}   (worst: {g_at}, {h_at})")
    return max(l_err, g_err, h_err), " ".join(cmd)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bissl", default="build/bissl-inspect", help="the bissl-inspect executable")
    ap.add_argument("--workdir", default="/tmp/bissl_compare_torch")
    ap.add_argument("--cases", default="r18_ce_train,r18_ce_eval,r18_ntxent_train,r18_byol_train,r18cifar_ntxent_train,vit_ce_train,vit_byol_train,vit_mae_train")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--dtype", default="f64", choices=["f64", "f32"], help="bissl's dtype (PyTorch always runs in f64)")
    ap.add_argument("--tol", type=float, default=None, help="largest relative difference accepted (default 1e-9 f64, 1e-3 f32)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.tol is None:
        args.tol = 1e-9 if args.dtype == "f64" else 1e-3
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    print(f"torch {torch.__version__} (f64), torchvision {torchvision.__version__}; bissl {args.dtype}; "
          f"relative difference = max|bissl - torch| / max|torch| per tensor (floor 1e-6 of the largest), worst shown")
    worst, last = 0.0, ""
    for case in args.cases.split(","):
        e, last = run_case(case, args, g)
        worst = max(worst, e)
    print(f"worst relative difference {worst:.1e} (bound {args.tol:.0e}); last command:\n  {last}")
    sys.exit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes an IDX dataset (Fashion-MNIST, MNIST) as an image folder that
`task.dataset = "folder"` reads (docs/datasets.md):

    OUT/train/<k>_<name>/<index>.png    OUT/test/<k>_<name>/<index>.png

<index> is the image's position in its IDX file (zero-padded), so
`task.folder_order = "name"` reads the images in the IDX files' order, and
the class folders sort in the order of --classes. Grey 8-bit PNGs, written
with the standard library only (zlib).

    python3 tools/idx_to_folder.py --classes 0,2,4,6 --out /tmp/fmnist_upper
"""
import argparse
import gzip
import os
import struct
import zlib

FASHION = ["T-shirt-top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot"]


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise SystemExit(f"{path}: expected an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def png_grey(path, w, h, pixels):
    def chunk(kind, body):
        c = struct.pack(">I", len(body)) + kind + body
        return c + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def find(root, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(root, name)):
            return os.path.join(root, name)
    raise SystemExit(f"{root}: no {stem}[.gz]")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="/usr/share/datasets/fashion-mnist", help="the folder of the four IDX files")
    ap.add_argument("--classes", default="", help="labels to keep, e.g. 0,2,4,6 (default: all)")
    ap.add_argument("--names", choices=["fashion", "digits"], default="fashion")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    keep = [int(c) for c in args.classes.split(",")] if args.classes else list(range(10))
    names = FASHION if args.names == "fashion" else [str(d) for d in range(10)]
    folder = {c: f"{k}_{names[c]}" for k, c in enumerate(keep)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        (n, h, w), px = read_idx(find(args.root, f"{prefix}-images-idx3-ubyte"))
        (m,), labels = read_idx(find(args.root, f"{prefix}-labels-idx1-ubyte"))
        if m != n:
            raise SystemExit(f"{split}: {n} images but {m} labels")
        written = 0
        for i in range(n):
            c = labels[i]
            if c not in folder:
                continue
            d = os.path.join(args.out, split, folder[c])
            os.makedirs(d, exist_ok=True)
            png_grey(os.path.join(d, f"{i:05d}.png"), w, h, px[i * h * w:(i + 1) * h * w])
            written += 1
        print(f"{split}: {written} images in {len(folder)} class folders under {os.path.join(args.out, split)}")


if __name__ == "__main__":
    main()

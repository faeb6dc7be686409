#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/
(small, valid or nearly valid inputs that reach deep into each parser).
Standard library only; run from anywhere:  python3 fuzz/make_corpus.py
"""
import gzip
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)]"""
    header, offset, blob = {}, 0, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blob += raw
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def i64(*v):
    return struct.pack("<%dq" % len(v), *v)


def png(w, h, channels, pixels):
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + bytes(pixels[y * w * channels:(y + 1) * w * channels]) for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def bmp(w, h):
    row = (w * 3 + 3) & ~3
    data = b"".join(bytes((x * 40) % 256 for x in range(w * 3)) + b"\x00" * (row - w * 3) for _ in range(h))
    return (b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54) +
            struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0) + data)


# safetensors
out("safetensors", "f32_i64_meta", safetensors(
    [("conv1.weight", "F32", [2, 1, 1, 1], f32(1.0, -2.0)), ("steps", "I64", [], i64(7))],
    {"format": "pt", "normalize_mean": "[0.5]"}))
out("safetensors", "f64_bf16_empty", safetensors(
    [("a", "F64", [2], struct.pack("<2d", 1.5, 2.5)), ("b", "BF16", [1, 2], b"\x80\x3f\x00\x40"),
     ("e", "F32", [0, 3], b"")]))
# checkpoint: a Linear(3, 2) and an SGD / LARS (momentum) state
w = f32(*[0.1 * i for i in range(6)])
b = f32(0.0, 1.0)
out("checkpoint", "linear_sgd", safetensors(
    [("model.weight", "F32", [2, 3], w), ("model.bias", "F32", [2], b), ("optim.steps", "I64", [], i64(3)),
     ("optim.lr", "F32", [], f32(0.1)), ("optim.state.0.step", "I64", [], i64(3)),
     ("optim.state.0.momentum_buffer", "F32", [2, 3], w), ("optim.state.1.step", "I64", [], i64(3)),
     ("optim.state.1.momentum_buffer", "F32", [2], b)]))
out("checkpoint", "adamw", safetensors(
    [("optim.steps", "I64", [], i64(1)), ("optim.state.0.step", "I64", [], i64(1)),
     ("optim.state.0.exp_avg", "F32", [2, 3], w), ("optim.state.0.exp_avg_sq", "F32", [2, 3], w)]))
# idx: mode byte (0 = as is, 1 = compressed by the harness) + file
images = struct.pack(">IIII", 0x803, 2, 3, 4) + bytes(range(24))
labels = struct.pack(">II", 0x801, 2) + bytes([3, 9])
out("idx", "images_raw", b"\x00" + images)
out("idx", "images_gz", b"\x01" + images)
out("idx", "labels_raw", b"\x00" + labels)
out("idx", "images_gzip_file", b"\x00" + gzip.compress(images))
# cifar / stl10: byte 0 picks the reader
out("cifar_stl10", "cifar10", b"\x00" + bytes([3]) + bytes(i % 256 for i in range(3072)))
out("cifar_stl10", "cifar100", b"\x01" + bytes([1, 42]) + bytes(i % 256 for i in range(3072)))
out("cifar_stl10", "stl10", b"\x03" + struct.pack("<I", 27648) + bytes(i % 251 for i in range(27648)) + bytes([4]))
# images: byte 0 = mode (channels, fit, interpolation, lazy)
out("image", "png_rgb", b"\x04" + png(5, 3, 3, [(i * 37) % 256 for i in range(45)]))
out("image", "png_grey_alpha", b"\x21" + png(3, 4, 2, [(i * 53) % 256 for i in range(24)]))
out("image", "png_rgba", b"\x18" + png(4, 4, 4, [(i * 11) % 256 for i in range(64)]))
out("image", "bmp", b"\x06" + bmp(4, 3))
out("image", "pgm", b"\x05" + b"P5\n3 2\n255\n" + bytes([0, 50, 100, 150, 200, 250]))
out("image", "ppm", b"\x24" + b"P6\n2 2\n255\n" + bytes(range(0, 240, 20)))
try:  # a JPEG and a GIF when Pillow is at hand (measuring venvs have it); optional
    import io
    from PIL import Image
    im = Image.new("RGB", (9, 7))
    im.putdata([((x * 30) % 256, (y * 40) % 256, 128) for y in range(7) for x in range(9)])
    for fmt, mode, name in (("JPEG", b"\x04", "jpeg"), ("GIF", b"\x03", "gif")):
        buf = io.BytesIO()
        im.save(buf, fmt)
        out("image", name, mode + buf.getvalue())
    # Progressive JPEGs (DC and AC scans, refinements: the Huffman tables a
    # scan uses differ from baseline's), colour and grey.
    for img, mode, name in ((im, b"\x04", "jpeg_progressive"), (im.convert("L"), b"\x05", "jpeg_progressive_grey")):
        buf = io.BytesIO()
        img.save(buf, "JPEG", progressive=True)
        out("image", name, mode + buf.getvalue())
except ImportError:
    pass
# VOC annotations
out("voc", "two_objects", """<annotation><folder>VOC2007</folder><filename>000001.jpg</filename>
<size><width>2</width><height>2</height><depth>3</depth></size>
<object><name>dog</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>
<object><name>person</name><difficult>1</difficult><part><name>hand</name></part></object>
</annotation>
""")
# configs: the shipped ones, and --set lines
for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
    if name.startswith("pipeline_") and name.endswith(".toml"):
        out("config", name, open(os.path.join(ROOT, "configs", name)).read())
out("config", "sets", 'bissl.lambda=0.01\ntask.classes=[1, 3]\npipeline.arms=ft,bissl\n'
    '[task]\ndataset = "folder"\nlazy = true\n')
# split files: byte 0 picks (0: labels as integers, 1: with class names, 2: a class-names file)
out("split_file", "plain", "\x00a.png 0\nb.jpg 1\n# comment\n\ndir/c.png 2\n")
out("split_file", "csv_names", '\x01path,label\n"dir/d e.png",cat\n"x,y.png",dog\na.png,12\n')
out("split_file", "class_names", "\x02cat\ndog\n# x\n\nbird\n")
# dataset folders: byte 0 picks the settings, then one entry per line
# (p: a PNG, g: a file of bytes, d: a folder, l: a link; fuzz_folder.cpp)
out("folder", "two_classes", "\x00ptrain/cat/a.png\nptrain/cat/b.png\nptrain/dog/c.png\nptrain/dog/d.png\n"
    "ptest/cat/e.png\nptest/dog/f.png\n")
out("folder", "val_nested_lazy", "\x29ptrain/a/x/1.png\nptrain/a/2.png\nptrain/b/3.png\nptrain/b/y/z/4.png\n"
    "pval/a/5.png\npval/b/6.png\nptest/a/7.png\nptest/b/8.png\ngtrain/b/notes.txt|hello\n")
out("folder", "bad_and_links", "\x10ptrain/a/1.png\ngtrain/a/2.png|\x89PNG junk\nptrain/b/3.png\n"
    "ltrain/b/4.png|3.png\nltrain/c|b\nltest/a|../train/a\nltest/b/loop.png|loop.png\ndtest/empty\n"
    "ptest/b/5.png\ngtrain/.hidden/6.png|x\n")
print("corpus written under", os.path.join(HERE, "corpus"))

#!/usr/bin/env python3
"""Largest relative difference between two safetensors files' f32 tensors (standard library only).

Usage: compare_safetensors.py A B TOL: prints the largest max|a - b| / max|b| over the tensors and
exits 1 when it is above TOL, or when the files hold different tensor names or shapes.
"""
import json
import struct
import sys
from array import array


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {t['dtype']}, not F32")
        a = array("f")
        a.frombytes(data[t["data_offsets"][0]:t["data_offsets"][1]])
        if sys.byteorder != "little":
            a.byteswap()
        out[name] = (t["shape"], a)
    return out


def main():
    a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
    if sorted(a) != sorted(b):
        raise SystemExit(f"different tensors: {sorted(set(a) ^ set(b))}")
    worst, where = 0.0, ""
    for name, (shape, va) in a.items():
        shape_b, vb = b[name]
        if shape != shape_b:
            raise SystemExit(f"{name}: shape {shape} vs {shape_b}")
        scale = max(1e-12, max(abs(x) for x in vb))
        d = max(abs(x - y) for x, y in zip(va, vb)) / scale
        if d > worst:
            worst, where = d, name
    print(f"largest relative difference {worst:.3g} ({where})")
    sys.exit(0 if worst <= tol else 1)


if __name__ == "__main__":
    main()

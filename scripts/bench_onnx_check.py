#!/usr/bin/python3
"""Checks that vaed and the ONNX Runtime reference (scripts/bench_onnx_server.js)
answer the benchmarked requests alike, before scripts/bench-onnx.sh times them:

    /usr/bin/python3 scripts/bench_onnx_check.py VAED_URL ORT_URL DATA_DIR [TOL]

  /encode   the first 64 MNIST test images, one request of 64 rows and one
            request per image for the first 8: mu and logvar
  /decode   format=json of vaed's mu for those 64 images and of 64 draws of
            N(0, I): x
  /sample   n=16, format=json: each server's own z decoded by the other's
            /decode (the two draw z from different generators, so the images
            can only be compared through the same z), x against x; and the
            keys and shapes of both answers
Prints the largest absolute difference of each; exits 1 when one is over TOL
(default 1e-4) or an answer's keys or shapes differ.
"""
import json
import os
import random
import struct
import sys
import urllib.request


def post(url, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def max_diff(a, b):
    if len(a) != len(b) or any(len(r) != len(s) for r, s in zip(a, b)):
        raise ValueError("shapes differ: %d rows against %d" % (len(a), len(b)))
    return max(abs(u - v) for r, s in zip(a, b) for u, v in zip(r, s))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    vaed, ort, data_dir = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"), sys.argv[3]
    tol = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4
    with open(os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte"), "rb") as f:
        _, _, h, w = struct.unpack(">IIII", f.read(16))
        d = h * w
        raw = f.read(64 * d)
    images = [[b / 255.0 for b in raw[i * d:(i + 1) * d]] for i in range(64)]

    diffs = {}
    bad = []

    def note(name, a, b):
        try:
            diffs[name] = max(diffs.get(name, 0.0), max_diff(a, b))
        except ValueError as e:
            bad.append("%s: %s" % (name, e))

    def same_keys(name, a, b):
        if sorted(a) != sorted(b):
            bad.append("%s: vaed answers keys %s, the reference %s" % (name, sorted(a), sorted(b)))

    va = post(vaed + "/encode", {"x": images})
    oa = post(ort + "/encode", {"x": images})
    same_keys("/encode", va, oa)
    for key in ("mu", "logvar"):
        note("/encode " + key, va[key], oa[key])
    for img in images[:8]:
        v1, o1 = post(vaed + "/encode", {"x": [img]}), post(ort + "/encode", {"x": [img]})
        for key in ("mu", "logvar"):
            note("/encode " + key, v1[key], o1[key])

    rng = random.Random(1)
    z_dim = len(va["mu"][0])
    for zs in (va["mu"], [[rng.gauss(0.0, 1.0) for _ in range(z_dim)] for _ in range(64)]):
        vd = post(vaed + "/decode?format=json", {"z": zs})
        od = post(ort + "/decode?format=json", {"z": zs})
        same_keys("/decode", vd, od)
        note("/decode x", vd["x"], od["x"])

    vs = post(vaed + "/sample?n=16&format=json")
    osm = post(ort + "/sample?n=16&format=json")
    same_keys("/sample", vs, osm)
    if len(vs["z"]) != 16 or len(osm["z"]) != 16:
        bad.append("/sample: %d and %d draws for n=16" % (len(vs["z"]), len(osm["z"])))
    note("/sample x (vaed's z)", vs["x"], post(ort + "/decode?format=json", {"z": vs["z"]})["x"])
    note("/sample x (reference's z)", osm["x"], post(vaed + "/decode?format=json", {"z": osm["z"]})["x"])

    for name, v in diffs.items():
        print("bench_onnx_check: %-28s max |vaed - onnxruntime| = %.3g%s" % (name, v, "" if v <= tol else "  OVER %g" % tol))
        if v > tol:
            bad.append("%s differs by %.3g > %g" % (name, v, tol))
    for b in bad:
        print("bench_onnx_check: FAIL " + b, file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

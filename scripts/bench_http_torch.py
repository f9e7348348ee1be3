#!/usr/bin/python3
"""The reference server scripts/bench-http.sh measures vaed against: the same
checkpoint in PyTorch behind the standard library's ThreadingHTTPServer.

    /usr/bin/python3 scripts/bench_http_torch.py CKPT.safetensors PORT [DATA_DIR]

It answers the three benchmarked requests the way vaed does:
  POST /encode            {"x": [[784 floats]]} -> {"mu": [[...]], "logvar": [[...]]}
  POST /sample?n=N&seed=S -> PNG grid of N decoded draws (ceil(sqrt(N)) columns)
  GET  /interpolate?from=mnist:test:I&to=mnist:test:J&steps=K -> PNG strip (lerp)
PNG is written with zlib (no imaging library needed). torch runs one thread
per request thread (torch.set_num_threads(1)), as vaed runs one BLAS thread
per compute thread. Prints "ready" once listening.
"""
import json
import math
import os
import struct
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import vae_torch  # noqa: E402


def png_grey(pixels, height, width):
    """8-bit greyscale PNG of a (height, width) float tensor in [0, 1]."""
    q = (pixels.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
    raw = b"".join(b"\x00" + q[y].tobytes() for y in range(height))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def grid(x, n, h, w, cols):
    rows = (n + cols - 1) // cols
    out = torch.zeros(rows * h, cols * w)
    imgs = x.reshape(n, h, w)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = imgs[i]
    return png_grey(out, rows * h, cols * w)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    ckpt, port = sys.argv[1], int(sys.argv[2])
    data_dir = sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "data")
    torch.set_num_threads(1)
    state, meta = vae_torch.load_safetensors(ckpt)
    config = json.loads(meta["vaed_config"])
    model = vae_torch.VAE(config)
    model.load_state_dict(state, strict=True)
    model.eval()
    h, w = config["height"], config["width"]
    with open(os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte"), "rb") as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        mnist = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).reshape(count, rows * cols)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, ctype, body):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            url = urlparse(self.path)
            q = parse_qs(url.query)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with torch.no_grad():
                if url.path == "/encode":
                    x = torch.tensor(json.loads(body)["x"], dtype=torch.float32)
                    mu, logvar = model.encode(x)
                    out = {"model": "digits", "mu": mu.tolist(), "logvar": logvar.tolist()}
                    return self.reply(200, "application/json", json.dumps(out).encode())
                if url.path == "/sample":
                    n = int(q.get("n", ["16"])[0])
                    g = torch.Generator().manual_seed(int(q.get("seed", ["0"])[0]))
                    z = torch.randn(n, model.Z, generator=g)
                    x = model.decode(z)
                    return self.reply(200, "image/png", grid(x, n, h, w, math.ceil(math.sqrt(n))))
            self.reply(404, "application/json", b'{"error":{"code":"not_found","message":""}}')

        def do_GET(self):
            url = urlparse(self.path)
            q = parse_qs(url.query)
            if url.path == "/interpolate":
                a = int(q["from"][0].split(":")[2])
                b = int(q["to"][0].split(":")[2])
                steps = int(q.get("steps", ["8"])[0])
                with torch.no_grad():
                    x = mnist[[a, b]].to(torch.float32) / 255.0
                    mu, _ = model.encode(x)
                    t = torch.linspace(0, 1, steps).unsqueeze(1)
                    z = (1 - t) * mu[0] + t * mu[1]
                    xs = model.decode(z)
                return self.reply(200, "image/png", grid(xs, steps, h, w, steps))
            self.reply(404, "application/json", b'{"error":{"code":"not_found","message":""}}')

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

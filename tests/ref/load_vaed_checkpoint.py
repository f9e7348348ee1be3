#!/usr/bin/python3
"""Loads a vaed checkpoint in PyTorch and encodes images with it.

    /usr/bin/python3 tests/ref/load_vaed_checkpoint.py CKPT.safetensors [N]

A vaed checkpoint is a safetensors file whose tensors carry PyTorch names and
layouts and whose __metadata__["vaed_config"] is the model's config as JSON.
So: read the file (the safetensors package if importable, else by hand),
build vae_torch.VAE(config), load_state_dict(strict=True), and use it. This
encodes the first N (default 4) MNIST test images from data/mnist and prints
mu, logvar and the mean negative ELBO of those images (eps = 0, no sampling,
so the figure is repeatable); a conditional model gets their labels.
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vae_torch  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def read_checkpoint(path):
    try:
        from safetensors import safe_open
    except ImportError:
        return vae_torch.load_safetensors(path)
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})


def mnist_test_images(n):
    with open(os.path.join(ROOT, "data", "mnist", "t10k-images-idx3-ubyte"), "rb") as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        raw = f.read(n * rows * cols)
    return torch.tensor(list(raw), dtype=torch.float32).reshape(n, rows * cols) / 255.0


def mnist_test_labels(n):
    with open(os.path.join(ROOT, "data", "mnist", "t10k-labels-idx1-ubyte"), "rb") as f:
        f.read(8)
        return torch.tensor(list(f.read(n)), dtype=torch.long)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    state, meta = read_checkpoint(path)
    if "vaed_config" not in meta:
        sys.exit("%s: no vaed_config in __metadata__ (not a vaed checkpoint)" % path)
    config = json.loads(meta["vaed_config"])
    model = vae_torch.VAE(config)
    model.load_state_dict(state, strict=True)
    model.eval()
    print("loaded %s: %d-%s-%d %s, %d tensors, %d parameters"
          % (path, model.D, "-".join(map(str, config["hidden"])), model.Z, config["likelihood"],
             len(state), sum(p.numel() for p in model.parameters())))
    if "vaed_metrics" in meta:
        print("metrics:", meta["vaed_metrics"][:200])
    x = mnist_test_images(n)
    y = mnist_test_labels(n) % model.K if model.K else None
    with torch.no_grad():
        mu, logvar = model.encode(x, y)
        loss, recon, kl = model.loss(x, torch.zeros(n * config.get("mc_samples", 1), model.Z), y=y)
    torch.set_printoptions(precision=4, sci_mode=False)
    print("mu =", mu)
    print("logvar =", logvar)
    print("negative ELBO per image at z = mu: %.2f (recon %.2f, kl %.2f)"
          % (loss.item() / n, recon.item() / n, kl.item() / n))


if __name__ == "__main__":
    main()

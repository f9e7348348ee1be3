#!/usr/bin/python3
"""The PyTorch side of scripts/measure-conditional.sh (a measurement, not a test).

    /usr/bin/python3 scripts/measure_conditional_torch.py --latent Z [--epochs 5]
        [--seed 1] [--samples 1000] [--temperatures 1,0.7,0.5] [--limit N]

trains the same conditional MLP as `vaed train --data mnist --conditional
--latent Z` (tests/ref/vae_torch.py's module with vaed's defaults: 784-400-Z,
ReLU, Bernoulli likelihood, Adam lr 1e-3, batch 128, the one-hot label into
encoder and decoder, one thread) and judges its samples as `vaed eval
--class-samples` does: SAMPLES draws of z ~ N(0, T^2 I) per class, decoded
with the label, given to a nearest-class-mean classifier on pixels whose
means are the MNIST test images' per class. One line per temperature:

    torch latent Z temperature T: class_accuracy A (per class 0:a0 1:a1 ...)

It answers whether a figure of vaed's is the model's or the engine's: the
same architecture trained by another engine should land close to it.
"""
import argparse
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import vae_torch  # noqa: E402


def read_idx(path):
    with open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        dims = struct.unpack(">" + "I" * (magic & 0xFF), f.read(4 * (magic & 0xFF)))
        raw = f.read()
    t = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return t.reshape(dims[0], -1) if len(dims) > 1 else t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latent", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--temperatures", default="1,0.7,0.5")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--data", default="data/mnist")
    a = ap.parse_args()
    temps = [float(t) for t in a.temperatures.split(",")]

    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    x = read_idx(os.path.join(a.data, "train-images-idx3-ubyte")).float() / 255.0
    y = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte")).long()
    if a.limit > 0:
        x, y = x[: a.limit], y[: a.limit]
    xt = read_idx(os.path.join(a.data, "t10k-images-idx3-ubyte")).float() / 255.0
    yt = read_idx(os.path.join(a.data, "t10k-labels-idx1-ubyte")).long()

    cfg = vae_torch.make_config(latent=a.latent, n_classes=10, epochs=a.epochs, seed=a.seed)
    model = vae_torch.VAE(cfg)
    opt = vae_torch.make_optimizer(model)
    B, Z, step = cfg["batch"], a.latent, 0
    for epoch in range(a.epochs):
        perm = torch.randperm(x.shape[0])
        total = 0.0
        for i in range(0, x.shape[0], B):
            j = perm[i:i + B]
            total += vae_torch.train_step(model, opt, x[j], torch.randn(len(j), Z), step, y[j])
            step += 1
        print("torch latent %d epoch %d/%d loss %.2f" % (Z, epoch + 1, a.epochs, total / x.shape[0]))

    means = torch.stack([xt[yt == k].mean(0) for k in range(10)])
    gen = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        for t in temps:
            per = []
            for k in range(10):
                z = torch.randn(a.samples, Z, generator=gen) * t
                s = model.decode(z, torch.full((a.samples,), k))
                per.append((torch.cdist(s, means).argmin(1) == k).float().mean().item())
            print("torch latent %d temperature %g: class_accuracy %.4f (per class %s)"
                  % (Z, t, sum(per) / 10, " ".join("%d:%.3f" % (k, p) for k, p in enumerate(per))))


if __name__ == "__main__":
    main()

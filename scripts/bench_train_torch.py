#!/usr/bin/python3
"""The PyTorch side of scripts/bench-train.sh (a benchmark, not a test).

    /usr/bin/python3 scripts/bench_train_torch.py --epochs E --threads N [--seed S]
        trains the pytorch/examples VAE (784-400-20, ReLU, sigmoid decoder, BCE
        summed + KL, Adam lr 1e-3, batch 128, shuffled each epoch) on MNIST and
        prints one line of JSON: images/s over the training steps, the test
        negative ELBO per image after the last epoch, peak RSS. --threads 0
        keeps torch's default thread count.
    ... --arch conv [--channels 32,64,128,256] [--latent 20] [--channels-last]
        [--data data/fashion]
        the same for vaed's convolutional VAE (engine/vae_conv.h, `vaed train
        --arch conv` with its defaults): 28x28 zero-padded to 32, Conv2d(3,
        stride 2, padding 1) + LeakyReLU(0.2) per width, Linear heads,
        Linear back, ConvTranspose2d(3, 2, 1, output_padding 1) with
        LeakyReLU(0.2) between, logits cropped to 28x28, BCE with logits
        summed + KL. --channels-last runs the convolutions in NHWC
        (torch.channels_last), which oneDNN sometimes prefers on CPU.
    /usr/bin/python3 scripts/bench_train_torch.py --table RESULTS.tsv
        prints the markdown table from the rows bench-train.sh collected;
    ... --conv-table RESULTS.tsv --epochs E
        the conv-vs-torch and conv-vs-MLP table of the Fashion-MNIST section.

The data is read once from the same IDX files vaed reads into one float
tensor; batches are slices of it (no DataLoader, no per-batch conversion), so
what is timed is the model's forward, backward and Adam, as in vaed.
"""
import argparse
import json
import os
import resource
import struct
import sys
import time

# the step's matrix-product-only rate (vaed's gemm), measured by bench-train.sh in the same run
# (scripts/bench_sgemm_ceiling.c); 30,000 is the engine issue's estimate
CEILING_IMAGES_PER_S = float(os.environ.get("CEILING_IMAGES_PER_S", "30000"))


def read_idx_images(path):
    import torch
    with open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 0x803:
            sys.exit("%s: not an IDX image file" % path)
        raw = f.read(n * rows * cols)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(n, rows * cols).float() / 255.0


def train(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    class VAE(nn.Module):  # pytorch/examples vae/main.py
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 400)
            self.fc21 = nn.Linear(400, 20)
            self.fc22 = nn.Linear(400, 20)
            self.fc3 = nn.Linear(20, 400)
            self.fc4 = nn.Linear(400, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar):
            std = torch.exp(0.5 * logvar)
            return mu + torch.randn_like(std) * std

        def decode(self, z):
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

        def forward(self, x):
            mu, logvar = self.encode(x)
            return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    def loss_function(recon_x, x, mu, logvar):
        bce = F.binary_cross_entropy(recon_x, x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    class ConvVAE(nn.Module):  # engine/vae_conv.h, idiomatic PyTorch
        def __init__(self, channels, latent, channels_last):
            super().__init__()
            self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
            layers, cin = [], 1
            for c in channels:
                layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
                cin = c
            self.encoder = nn.Sequential(*layers)
            self.side = 32 >> len(channels)
            flat = channels[-1] * self.side * self.side
            self.fc_mu = nn.Linear(flat, latent)
            self.fc_logvar = nn.Linear(flat, latent)
            self.decoder_input = nn.Linear(latent, flat)
            widths = channels[::-1] + [1]
            layers = []
            for i in range(len(channels)):
                layers.append(nn.ConvTranspose2d(widths[i], widths[i + 1], 3, stride=2, padding=1,
                                                 output_padding=1))
                if i < len(channels) - 1:
                    layers.append(nn.LeakyReLU(0.2))
            self.decoder = nn.Sequential(*layers)
            self.to(memory_format=self.memory_format)

        def forward(self, x):
            h = F.pad(x.view(-1, 1, 28, 28), (2, 2, 2, 2)).contiguous(memory_format=self.memory_format)
            h = self.encoder(h).flatten(1)
            mu, logvar = self.fc_mu(h), self.fc_logvar(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            h = self.decoder_input(z).view(z.shape[0], -1, self.side, self.side)
            logits = self.decoder(h.contiguous(memory_format=self.memory_format))
            return logits[:, :, 2:30, 2:30].reshape(x.shape[0], 784), mu, logvar

    def conv_loss_function(logits, x, mu, logvar):
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    train_x = read_idx_images(os.path.join(args.data, "train-images-idx3-ubyte"))
    if args.limit > 0:
        train_x = train_x[:args.limit]
    test_x = read_idx_images(os.path.join(args.data, "t10k-images-idx3-ubyte"))
    if args.arch == "conv":
        channels = [int(c) for c in args.channels.split(",")]
        model = ConvVAE(channels, args.latent, args.channels_last)
        loss_function = conv_loss_function  # noqa: F811 (the conv model returns logits)
    else:
        model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n, bs = train_x.shape[0], args.batch
    train_seconds = 0.0
    for _ in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n)
        for i in range(0, n, bs):
            x = train_x[order[i:i + bs]]
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            opt.step()
        train_seconds += time.perf_counter() - t0
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, test_x.shape[0], 1000):
            x = test_x[i:i + 1000]
            recon, mu, logvar = model(x)
            total += loss_function(recon, x, mu, logvar).item()
    print(json.dumps({
        "arch": args.arch,
        "threads": args.threads if args.threads > 0 else "default",
        "torch_threads": torch.get_num_threads(),
        "images_per_s": args.epochs * n / train_seconds,
        "test_loss": total / test_x.shape[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
    }))


def table(path):
    rows = []
    with open(path) as f:
        for line in f:
            impl, setting, ips, loss, rss = line.rstrip("\n").split("\t")
            rows.append((impl, setting, float(ips), float(loss), rss))
    settings = []
    for impl, setting, *_ in rows:
        if (impl, setting) not in settings:
            settings.append((impl, setting))

    def best(impl, setting):
        sel = [r for r in rows if r[0] == impl and r[1] == setting]
        return (max(r[2] for r in sel), sum(r[3] for r in sel) / len(sel),
                max((r[4] for r in sel), key=lambda s: float(s) if s != "n/a" else -1.0), len(sel))

    vaed = [s for s in settings if s[0] == "vaed"]
    torch_s = [s for s in settings if s[0] == "torch"]
    best_torch = max(torch_s, key=lambda s: best(*s)[0]) if torch_s else None
    bt_ips = best(*best_torch)[0] if best_torch else float("nan")
    print("| run | threads | images/s (best of %d) | vs best torch | test loss (nats/image) "
          "| peak RSS MB | of the %d images/s matrix-product ceiling |" % (best(*settings[0])[3], CEILING_IMAGES_PER_S))
    print("|---|---|---:|---:|---:|---:|---:|")
    for impl, setting in vaed + torch_s:
        ips, loss, rss, _ = best(impl, setting)
        rss_s = rss if rss == "n/a" else "%.0f" % float(rss)
        mark = " (best)" if (impl, setting) == best_torch else ""
        print("| %s | %s%s | %.0f | %.2fx | %.2f | %s | %.0f%% |"
              % (impl, setting, mark, ips, ips / bt_ips, loss, rss_s,
                 100.0 * ips / CEILING_IMAGES_PER_S))
    if vaed and best_torch:
        v = best(*vaed[0])[0]
        print("\nvaed / best torch (%s threads): %.2fx" % (best_torch[1], v / bt_ips))


def conv_table(path, epochs):
    """Rows: vaed-conv, vaed-mlp (both vaed, on Fashion-MNIST) and torch-conv
    settings; images/s best of the repeats, test loss their mean."""
    rows = []
    with open(path) as f:
        for line in f:
            impl, setting, ips, loss, rss = line.rstrip("\n").split("\t")
            rows.append((impl, setting, float(ips), float(loss), rss))
    keys = []
    for r in rows:
        if (r[0], r[1]) not in keys:
            keys.append((r[0], r[1]))

    def best(key):
        sel = [r for r in rows if (r[0], r[1]) == key]
        return (max(r[2] for r in sel), sum(r[3] for r in sel) / len(sel),
                max((r[4] for r in sel), key=lambda s: float(s) if s != "n/a" else -1.0), len(sel))

    torch_keys = [k for k in keys if k[0] == "torch-conv"]
    best_torch = max(torch_keys, key=lambda k: best(k)[0]) if torch_keys else None
    bt_ips = best(best_torch)[0] if best_torch else float("nan")
    names = {"vaed-conv": ("vaed", "conv"), "vaed-mlp": ("vaed", "mlp 784-400-20"),
             "torch-conv": ("torch", "conv")}
    print("| run | model | threads | images/s (best of %d) | vs best torch conv "
          "| test neg. ELBO after %d epochs (nats/image) | peak RSS MB |" % (best(keys[0])[3], epochs))
    print("|---|---|---|---:|---:|---:|---:|")
    for key in [k for k in keys if k[0] == "vaed-conv"] + torch_keys + \
               [k for k in keys if k[0] == "vaed-mlp"]:
        ips, loss, rss, _ = best(key)
        impl, model = names.get(key[0], (key[0], "?"))
        rss_s = rss if rss == "n/a" else "%.0f" % float(rss)
        mark = " (best)" if key == best_torch else ""
        print("| %s | %s | %s%s | %.0f | %.2fx | %.2f | %s |"
              % (impl, model, key[1], mark, ips, ips / bt_ips, loss, rss_s))
    conv = [k for k in keys if k[0] == "vaed-conv"]
    mlp = [k for k in keys if k[0] == "vaed-mlp"]
    if conv and best_torch:
        print("\nvaed conv / best torch conv (%s): %.2fx (target >= 3x, issue #18)"
              % (best_torch[1], best(conv[0])[0] / bt_ips))
    if conv and mlp:
        c, m = best(conv[0])[1], best(mlp[0])[1]
        print("test negative ELBO on Fashion-MNIST after %d epochs: conv %.2f, MLP %.2f "
              "(conv %+.2f nats/image)" % (epochs, c, m, c - m))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--arch", choices=["mlp", "conv"], default="mlp")
    ap.add_argument("--channels", default="32,64,128,256", help="conv widths (vaed's default)")
    ap.add_argument("--latent", type=int, default=20, help="conv latent (vaed's default)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--conv-table", metavar="RESULTS_TSV")
    ap.add_argument("--limit", type=int, default=0, help="the first N training images (a quick try)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist"))
    ap.add_argument("--table", metavar="RESULTS_TSV")
    args = ap.parse_args()
    if args.table:
        table(args.table)
    elif args.conv_table:
        conv_table(args.conv_table, args.epochs)
    else:
        train(args)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Writes tests/ref/fixtures/*.safetensors, the PyTorch reference numbers
tests/unit/test_torch_ref.c checks the C engine against.

    /usr/bin/python3 tests/ref/make_fixtures.py      (from the repository root;
                                                      needs python3-torch and data/mnist)

One file per likelihood, each a small model on the first 4 MNIST test images
with fixed eps, holding: param.<name>, grad.<name> (of the summed loss), x,
eps, mu, logvar, z, x_mean, adam_eps (5, B*L, Z), adam_losses (5,) (the loss
before each step) and adam_param.<name> (after 5 Adam steps); metadata
vaed_config (the C config JSON), loss, recon, kl (repr of float64).

Parameters, inputs and eps are float32 values; the reference arithmetic is
done in float64 so that what the C test measures is the C engine's own float32
error, not the sum of two. The configs vary activation, depth, mc_samples,
beta, KL warm-up, free bits, weight decay and gradient clipping, and two
fixtures spread their output logits (see spread_*), so that each path of
vae_forward_loss / vae_backward / vae_adam_update / vae_decode runs once.

The conv_* files are the same for the convolutional VAE (arch "conv",
nn.Conv2d / nn.ConvTranspose2d layouts): 16x16 crops of the images (one or
three channels, no padding) and the 28x28 images (padded to 32 and cropped).

The cond_* and conv_cond_* files are conditional models (n_classes 10): they
also hold "labels", the images' MNIST labels as F32 (the by-hand writer
writes F32 only), which every pass takes.

Also pytorch_examples.safetensors, a pure state_dict of the pytorch/examples
VAE class (fc1 784->16, fc21/fc22 16->4, fc3 4->16, fc4 16->784; metadata only
"format": "pt", as safetensors.torch.save_file writes), and
pytorch_examples_expected.safetensors with x, mu, logvar and x_mean
(decode of mu) for the same 4 images.
"""
import copy
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vae_torch  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "ref", "fixtures")
B = 4
ADAM_STEPS = 5

def spread_cbernoulli_logits(model):
    """Output logits from -60 to 60, and a few exactly near 0, so every branch
    of the continuous Bernoulli's log C(l), its derivative and its mean runs
    (Taylor series under |l| < 1e-3, 1/l over |l| > 40)."""
    D = model.D
    model.out.bias.copy_(torch.linspace(-60.0, 60.0, D))
    near0 = torch.tensor([0.0, 2e-4, -2e-4, 9e-4, -9e-4, 1.1e-3, -1.1e-3])
    model.out.weight[: len(near0)] = 0.0  # corner pixels: the logit is the bias
    model.out.bias[: len(near0)] = near0


def spread_pixel_logvar(model):
    """Per-pixel logvar from -3 to 31, so some pixels sit above the clamp at 30
    (no gradient there) and the rest span a wide range."""
    D = model.D
    model.out.bias[D:] = torch.linspace(-3.0, 31.0, D)


def crop16(x, top=6, left=6):
    """(B, 784) MNIST -> (B, 256): a 16x16 window, for the 16x16 conv models."""
    return x.reshape(-1, 28, 28)[:, top:top + 16, left:left + 16].reshape(x.shape[0], 256)


def crop16_rgb(x):
    """(B, 784) -> (B, 3*256): three shifted 16x16 windows as the channels, so
    that each channel differs (a channel mix-up in the layout moves shows)."""
    return torch.cat([crop16(x, 6, 6), crop16(x, 4, 6), crop16(x, 8, 5)], dim=1)


def shift_logvar_channel(model):
    """The logvar channel's bias to -1.5: per-pixel variances away from 1, so
    the mean and the logvar halves of the logits are told apart."""
    model.decoder[-1].bias[1] = -1.5


SPECS = [
    # name, seed, config overrides, change to the initial parameters, input from the (B, 784) images
    ("bernoulli", 1, dict(hidden=[16], latent=4, likelihood="bernoulli", activation="relu"), None, None),
    ("cbernoulli", 2, dict(hidden=[16], latent=4, likelihood="cbernoulli", activation="leaky_relu",
                           mc_samples=2, kl_warmup=4), spread_cbernoulli_logits, None),
    ("gaussian", 3, dict(hidden=[16, 8], latent=4, likelihood="gaussian", sigma=0.5,
                         activation="tanh", beta=0.5, weight_decay=1e-3, clip_grad=50.0), None, None),
    ("gaussian-learned", 4, dict(hidden=[8], latent=4, likelihood="gaussian-learned",
                                 activation="elu", free_bits="auto"), spread_pixel_logvar, None),
    # the conv VAE (engine/vae_conv.c): no padding, two layers, 16x16
    ("conv_bernoulli", 11, dict(arch="conv", height=16, width=16, conv_channels=[4, 8], latent=3,
                                likelihood="bernoulli"), None, crop16),
    # 28x28: padded to 32 and cropped back; 2C output channels; two decoder
    # passes per image; KL warm-up
    ("conv_gaussian-learned", 12, dict(arch="conv", conv_channels=[4, 8], latent=3,
                                       likelihood="gaussian-learned", mc_samples=2, kl_warmup=4),
     shift_logvar_channel, None),
    ("conv_cbernoulli", 13, dict(arch="conv", conv_channels=[4, 8], latent=3,
                                 likelihood="cbernoulli", free_bits="auto"), None, None),
    # three image channels, three layers down to 2x2; clipping scales the
    # gradient by 2/3. The seed matters: with seed 14 one weight's gradient
    # came out ~1e-7, near Adam's eps, where float32 rounding moves the step
    # by 0.7 of the Adam tolerance (PyTorch's own float32 run as much)
    ("conv_gaussian_rgb", 16, dict(arch="conv", channels=3, height=16, width=16,
                                   conv_channels=[4, 8, 8], latent=4, likelihood="gaussian",
                                   sigma=0.5, beta=0.5, clip_grad=300.0), None, crop16_rgb),
    # conditional: the one-hot label into the first encoder and decoder
    # layers; two decoder passes per image, so the label repeats per sample
    ("cond_bernoulli", 21, dict(hidden=[16], latent=4, n_classes=10, mc_samples=2,
                                likelihood="bernoulli"), None, None),
    # no hidden layer: the one-hot goes into fc_mu / fc_logvar and into out
    ("cond_gaussian_nohidden", 22, dict(hidden=[], latent=3, n_classes=10, likelihood="gaussian",
                                        sigma=0.5, kl_warmup=4), None, None),
    # conv: label planes over the padded 32x32 side, into decoder_input
    ("conv_cond_bernoulli", 23, dict(arch="conv", conv_channels=[4, 8], latent=3, n_classes=10,
                                     mc_samples=2, likelihood="bernoulli"), None, None),
    # three image channels, then the ten label planes
    ("conv_cond_rgb", 24, dict(arch="conv", channels=3, height=16, width=16, conv_channels=[4, 8],
                               latent=3, n_classes=10, likelihood="cbernoulli"), None, crop16_rgb),
]


def mnist_test_labels(n):
    path = os.path.join(ROOT, "data", "mnist", "t10k-labels-idx1-ubyte")
    with open(path, "rb") as f:
        magic, count = struct.unpack(">II", f.read(8))
        if magic != 0x801 or count < n:
            raise SystemExit("%s: not an IDX label file with %d labels" % (path, n))
        return torch.tensor(list(f.read(n)), dtype=torch.long)


def mnist_test_images(n):
    path = os.path.join(ROOT, "data", "mnist", "t10k-images-idx3-ubyte")
    with open(path, "rb") as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 0x803 or count < n:
            raise SystemExit("%s: not an IDX image file with %d images" % (path, n))
        raw = f.read(n * rows * cols)
    x = torch.tensor(list(raw), dtype=torch.float32).reshape(n, rows * cols) / 255.0
    return x


def f32(v):
    """The float32 value nearest v, as a Python float."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def kl_dim_mean(model, x, y):
    with torch.no_grad():
        mu, lv = model.encode(x, y)
        lvc = lv.clamp(vae_torch.LOGVAR_MIN, vae_torch.LOGVAR_MAX)
        return (0.5 * (mu * mu + torch.exp(lvc) - 1.0 - lvc)).mean(0)


def make_fixture(name, seed, overrides, shape, x32, labels):
    torch.manual_seed(seed)
    auto_free_bits = overrides.get("free_bits") == "auto"
    cfg = vae_torch.make_config(**{k: v for k, v in overrides.items() if v != "auto"})
    cfg["seed"] = seed
    cfg["batch"] = B
    model32 = vae_torch.VAE(cfg)  # float32 init, PyTorch's defaults
    if shape:
        with torch.no_grad():
            shape(model32)
    L, Z = cfg["mc_samples"], cfg["latent"]
    y = labels if cfg["n_classes"] else None
    y_rep = y.repeat_interleave(L) if y is not None else None
    eps32 = torch.randn(B * L, Z)
    adam_eps32 = torch.randn(ADAM_STEPS, B * L, Z)

    model = copy.deepcopy(model32).double()
    x = x32.double()
    eps = eps32.double()
    if auto_free_bits:
        # a floor between the dimensions' KLs, so some are held and some are not
        m = sorted(kl_dim_mean(model, x, y).tolist())
        cfg["free_bits"] = f32(0.5 * (m[Z // 2 - 1] + m[Z // 2]))
        model.config["free_bits"] = model32.config["free_bits"] = cfg["free_bits"]

    model.zero_grad()
    loss, recon, kl = model.loss(x, eps, step=0, y=y)
    loss.backward()
    with torch.no_grad():
        mu, logvar = model.encode(x, y)
        z = model.reparameterize(mu, logvar, eps)
        x_mean = model.decode(z, y_rep)
    grad_norm = torch.sqrt(sum((p.grad * p.grad).sum() for p in model.parameters())).item()

    t = {}
    for pname, p in model32.named_parameters():
        t["param." + pname] = p.detach()
    for pname, p in model.named_parameters():
        t["grad." + pname] = p.grad.detach()
    t.update(x=x32, eps=eps32, mu=mu, logvar=logvar, z=z, x_mean=x_mean)
    if y is not None:
        t["labels"] = y.to(torch.float32)

    # Adam from the same start, one eps per step; the loss before each step
    adam_model = copy.deepcopy(model32).double()
    opt = vae_torch.make_optimizer(adam_model)
    losses = []
    margins = []
    for i in range(ADAM_STEPS):
        if cfg["free_bits"] > 0:
            margins.append((kl_dim_mean(adam_model, x, y) - cfg["free_bits"]).abs().min().item())
        losses.append(vae_torch.train_step(adam_model, opt, x, adam_eps32[i].double(), i, y))
    t["adam_eps"] = adam_eps32
    t["adam_losses"] = torch.tensor(losses, dtype=torch.float64)
    for pname, p in adam_model.named_parameters():
        t["adam_param." + pname] = p.detach()

    meta = {
        "vaed_config": vae_torch.config_to_json(cfg),
        "loss": repr(loss.item()),
        "recon": repr(recon.item()),
        "kl": repr(kl.item()),
    }
    path = os.path.join(OUT, name + ".safetensors")
    vae_torch.save_safetensors(path, t, meta)
    extra = ""
    if cfg["free_bits"] > 0:
        extra += "  free_bits %.6g (closest dim %.3g away)" % (cfg["free_bits"], min(margins))
    if cfg["clip_grad"] > 0:
        extra += "  grad norm %.4g vs clip %g" % (grad_norm, cfg["clip_grad"])
    print("%-22s loss %.6f recon %.6f kl %.6f  %d bytes%s"
          % (name + ".safetensors", loss.item(), recon.item(), kl.item(), os.path.getsize(path), extra))


class ExamplesVAE(nn.Module):
    """pytorch/examples vae/main.py's model, shrunk (784-16-4)."""

    def __init__(self, D=784, H=16, Z=4):
        super().__init__()
        self.fc1 = nn.Linear(D, H)
        self.fc21 = nn.Linear(H, Z)
        self.fc22 = nn.Linear(H, Z)
        self.fc3 = nn.Linear(Z, H)
        self.fc4 = nn.Linear(H, D)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))


def make_examples(x32):
    torch.manual_seed(5)
    model32 = ExamplesVAE()
    model = copy.deepcopy(model32).double()
    with torch.no_grad():
        mu, logvar = model.encode(x32.double())
        x_mean = model.decode(mu)
    p = os.path.join(OUT, "pytorch_examples.safetensors")
    vae_torch.save_safetensors(p, dict(model32.state_dict()), {"format": "pt"})
    e = os.path.join(OUT, "pytorch_examples_expected.safetensors")
    vae_torch.save_safetensors(e, {"x": x32, "mu": mu, "logvar": logvar, "x_mean": x_mean})
    print("pytorch_examples.safetensors %d bytes, expected %d bytes"
          % (os.path.getsize(p), os.path.getsize(e)))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    x32 = mnist_test_images(B)
    labels = mnist_test_labels(B)
    for name, seed, overrides, shape, inputs in SPECS:
        make_fixture(name, seed, overrides, shape, inputs(x32) if inputs else x32, labels)
    make_examples(x32)


if __name__ == "__main__":
    main()

"""vaed's MLP VAE in PyTorch: the reference the C engine is tested against.

Parameter names and layouts are those of the C model's tensor table
(engine/vae_mlp.c, mlp_build_tensors), so a vaed checkpoint loads with
load_state_dict(strict=True) and this module's state_dict saves as one:

    encoder.<i>.weight/bias   D -> hidden[0] -> ... -> hidden[-1]
    fc_mu, fc_logvar          hidden[-1] -> latent
    decoder.<i>.weight/bias   latent -> hidden[-1] -> ... -> hidden[0]
    out                       hidden[0] -> D (2*D for gaussian-learned:
                              D mean logits, then D per-pixel logvar)

and, for arch "conv", those of engine/vae_conv.c (conv_build_tensors):

    encoder.<i>               nn.Conv2d(in -> conv_channels[i], 3, stride 2,
                              padding 1), LeakyReLU(0.2) after each
    fc_mu, fc_logvar          flatten (ch[-1], F, F) -> latent
    decoder_input             latent -> ch[-1] F F, reshaped, no activation
    decoder.<i>               nn.ConvTranspose2d(ch[-1-i] -> ch[-2-i], 3, 2,
                              padding 1, output_padding 1), LeakyReLU(0.2)
                              between; the last one (-> C, or 2C for
                              gaussian-learned: C mean channels, then C
                              logvar channels) gives the logits
    A 28x28 image is zero-padded to 32x32 and the logits cropped back; the
    flat logits are then the MLP's layout (D means, then D logvars).

A conditional model (config "n_classes" K > 0, Sohn et al. 2015) takes a
label y in 0..K-1 per image, one-hot, into the encoder and the decoder:

    mlp   the first encoder layer (fc_mu, fc_logvar when there is no hidden
          layer) is Linear(D + K, ...) on cat([x, one_hot(y)]); the first
          decoder layer (out when there is none) Linear(latent + K, ...) on
          cat([z, one_hot(y)]): the one-hot is the weight's last K columns
    conv  encoder.0 is Conv2d(C + K, ...) on the padded image with K planes
          after its channels, plane k all 1 for label k and all 0 otherwise
          (over the whole padded side); decoder_input is Linear(latent + K,
          ...) on cat([z, one_hot(y)])

The config is a dict with the keys of the C config JSON
(ckpt_config_to_json in engine/checkpoint.c); loss() computes exactly what
vae_forward_loss optimises, including the logvar clamp, mc_samples, free
bits and the KL warm-up.

    model = VAE(config)
    loss, recon, kl = model.loss(x, eps, step=0)   # summed over the batch
    loss, recon, kl = model.loss(x, eps, step=0, y=labels)   # conditional

save_safetensors / load_safetensors read and write the format by hand (F32
only), so neither needs the safetensors package.
"""
import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

LOGVAR_MIN, LOGVAR_MAX = -30.0, 30.0  # engine/vae.c clamps logvar here
LOG_2PI = math.log(2.0 * math.pi)
CONV_LEAKY_SLOPE = 0.2  # engine/vae_conv.h VAE_CONV_LEAKY_SLOPE; cfg activation is unused

DEFAULT_CONFIG = {
    "arch": "mlp", "channels": 1, "height": 28, "width": 28, "hidden": [400],
    "conv_channels": [32, 64, 128, 256], "latent": 20, "activation": "relu",
    "likelihood": "bernoulli", "sigma": 1.0, "binarize": "none", "beta": 1.0,
    "kl_warmup": 0, "free_bits": 0.0, "mc_samples": 1, "lr": 1e-3, "beta1": 0.9,
    "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "clip_grad": 0.0,
    "batch": 128, "epochs": 10, "seed": 1, "n_classes": 0,
}


def make_config(**overrides):
    cfg = dict(DEFAULT_CONFIG)
    for k, v in overrides.items():
        if k not in cfg:
            raise KeyError("unknown config key %r" % k)
        cfg[k] = v
    return cfg


def config_to_json(cfg):
    # vaed writes n_classes only for a conditional model
    out = {k: v for k, v in cfg.items() if k != "n_classes" or v}
    return json.dumps(out, separators=(",", ":"))


def activation(name, x):
    if name == "relu":
        return F.relu(x)
    if name == "leaky_relu":
        return F.leaky_relu(x, 0.01)
    if name == "tanh":
        return torch.tanh(x)
    if name == "elu":
        return F.elu(x)
    raise ValueError("unknown activation %r" % name)


def cb_log_norm(logits):
    """log C(l) of the continuous Bernoulli, C(l) = l / tanh(l/2) (2 at l = 0).

    Taylor series under |l| < 1e-3, as engine/vae.c does; the other branch is
    evaluated at a safe value there so its gradient stays finite.
    """
    a = logits.abs()
    small = a < 1e-3
    a_safe = torch.where(small, torch.ones_like(a), a)
    # log|l| - log tanh(|l|/2); d/dl = 1/l - 1/sinh(l)
    far = torch.log(a_safe) - torch.log(torch.tanh(a_safe / 2.0))
    near = math.log(2.0) + logits * logits / 12.0
    return torch.where(small, near, far)


def cb_mean(logits):
    """Mean of the continuous Bernoulli: lambda/(2 lambda - 1) - 1/l (1/2 at 0)."""
    small = logits.abs() < 1e-3
    l_safe = torch.where(small, torch.ones_like(logits), logits)
    lam = torch.sigmoid(l_safe)
    far = lam / (2.0 * lam - 1.0) - 1.0 / l_safe
    return torch.where(small, 0.5 + logits / 12.0, far)


class VAE(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = dict(DEFAULT_CONFIG, **config)
        c = self.config
        self.D = c["channels"] * c["height"] * c["width"]
        self.Z = c["latent"]
        self.K = int(c.get("n_classes", 0))
        if c["arch"] == "conv":
            self._init_conv()
            return
        if c["arch"] != "mlp":
            raise ValueError("unknown arch %r" % c["arch"])
        hidden = list(c["hidden"])
        widths = [self.D + self.K] + hidden
        self.encoder = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(len(hidden)))
        last = widths[-1]
        self.fc_mu = nn.Linear(last, self.Z)
        self.fc_logvar = nn.Linear(last, self.Z)
        dec = [self.Z + self.K] + hidden[::-1]
        self.decoder = nn.ModuleList(nn.Linear(dec[i], dec[i + 1]) for i in range(len(hidden)))
        d_out = 2 * self.D if c["likelihood"] == "gaussian-learned" else self.D
        self.out = nn.Linear(dec[-1], d_out)

    def _init_conv(self):
        c = self.config
        C, S = c["channels"], c["height"]
        if c["width"] != S:
            raise ValueError("arch conv needs square images")
        self.S = S
        self.P = 32 if S == 28 else S  # vae_conv_padded_size
        self.pad = (self.P - S) // 2
        ch = list(c["conv_channels"])
        n = len(ch)
        self.side = self.P >> n  # F in engine/vae_conv.h
        self.flat = ch[-1] * self.side * self.side
        ins = [C + self.K] + ch[:-1]
        self.encoder = nn.ModuleList(nn.Conv2d(ins[i], ch[i], 3, stride=2, padding=1)
                                     for i in range(n))
        self.fc_mu = nn.Linear(self.flat, self.Z)
        self.fc_logvar = nn.Linear(self.flat, self.Z)
        self.decoder_input = nn.Linear(self.Z + self.K, self.flat)
        c_out = 2 * C if c["likelihood"] == "gaussian-learned" else C
        outs = ch[::-1][1:] + [c_out]
        self.decoder = nn.ModuleList(
            nn.ConvTranspose2d(ch[n - 1 - i], outs[i], 3, stride=2, padding=1, output_padding=1)
            for i in range(n))

    def onehot(self, y, like):
        """(rows, K) one-hot of y (rows,), in like's dtype; y None when not
        conditional."""
        if (y is None) != (self.K == 0):
            raise ValueError("a conditional model needs labels, an unconditional one takes none")
        return F.one_hot(y.long(), self.K).to(like.dtype)

    def encode(self, x, y=None):
        if self.config["arch"] == "conv":
            c = self.config
            h = x.reshape(x.shape[0], c["channels"], self.S, self.S)
            if self.pad:
                h = F.pad(h, (self.pad,) * 4)
            if self.K:
                planes = self.onehot(y, h)[:, :, None, None].expand(-1, -1, self.P, self.P)
                h = torch.cat([h, planes], 1)
            for layer in self.encoder:
                h = F.leaky_relu(layer(h), CONV_LEAKY_SLOPE)
            h = h.flatten(1)
            return self.fc_mu(h), self.fc_logvar(h)
        h = torch.cat([x, self.onehot(y, x)], 1) if self.K else x
        for layer in self.encoder:
            h = activation(self.config["activation"], layer(h))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z, y=None):
        """y: one label per row of z."""
        if self.K:
            z = torch.cat([z, self.onehot(y, z)], 1)
        if self.config["arch"] == "conv":
            h = self.decoder_input(z).reshape(z.shape[0], -1, self.side, self.side)
            for i, layer in enumerate(self.decoder):
                h = layer(h)
                if i < len(self.decoder) - 1:
                    h = F.leaky_relu(h, CONV_LEAKY_SLOPE)
            if self.pad:
                h = h[:, :, self.pad:self.pad + self.S, self.pad:self.pad + self.S]
            return h.flatten(1)
        h = z
        for layer in self.decoder:
            h = activation(self.config["activation"], layer(h))
        return self.out(h)

    def decode(self, z, y=None):
        """The likelihood's mean, clamped to [0, 1] (vae_decode)."""
        logits = self.decode_logits(z, y)[:, : self.D]
        if self.config["likelihood"] == "cbernoulli":
            mean = cb_mean(logits)
        else:
            mean = torch.sigmoid(logits)
        return mean.clamp(0.0, 1.0)

    def reparameterize(self, mu, logvar, eps):
        """eps: (B*L, Z), row b*L + l is sample l of image b."""
        L = eps.shape[0] // mu.shape[0]
        sd = torch.exp(0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))
        return mu.repeat_interleave(L, dim=0) + sd.repeat_interleave(L, dim=0) * eps

    def nll(self, logits, x):
        """-log p(x | logits) per row, summed over pixels: (rows,)."""
        c = self.config
        D = self.D
        lik = c["likelihood"]
        if lik == "bernoulli":
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        if lik == "cbernoulli":
            bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
            return (bce - cb_log_norm(logits)).sum(1)
        if lik == "gaussian":
            s = float(c["sigma"])
            d = torch.sigmoid(logits) - x
            return (0.5 * d * d / (s * s)).sum(1) + D * (math.log(s) + 0.5 * LOG_2PI)
        if lik == "gaussian-learned":
            d = torch.sigmoid(logits[:, :D]) - x
            lv = logits[:, D:].clamp(LOGVAR_MIN, LOGVAR_MAX)
            return (0.5 * (d * d * torch.exp(-lv) + lv + LOG_2PI)).sum(1)
        raise ValueError("unknown likelihood %r" % lik)

    def beta_eff(self, step):
        c = self.config
        beta = float(c["beta"])
        if c["kl_warmup"] > 0 and step < c["kl_warmup"]:
            beta *= step / c["kl_warmup"]
        return beta

    def loss(self, x, eps, step=0, y=None):
        """vae_forward_loss: (loss, recon, kl), each summed over the batch.

        step is the number of Adam steps taken (for the KL warm-up); y the
        labels (B,) of a conditional model.
        """
        c = self.config
        B = x.shape[0]
        L = eps.shape[0] // B
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar, eps)
        x_rep = x.repeat_interleave(L, dim=0)
        y_rep = y.repeat_interleave(L, dim=0) if y is not None else None
        recon = self.nll(self.decode_logits(z, y_rep), x_rep).sum() / L
        lvc = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        kl_elem = 0.5 * (mu * mu + torch.exp(lvc) - 1.0 - lvc)
        kl = kl_elem.sum()
        fb = float(c["free_bits"])
        if fb > 0.0:
            # a dimension whose batch-mean KL is under the floor costs the
            # floor and gets no gradient
            kl_dim = kl_elem.sum(0)
            floor = torch.full_like(kl_dim, fb * B)
            kl_opt = torch.where(kl_dim / B < fb, floor, kl_dim).sum()
        else:
            kl_opt = kl
        loss = recon + self.beta_eff(step) * kl_opt
        return loss, recon, kl


def make_optimizer(model):
    c = model.config
    return torch.optim.Adam(model.parameters(), lr=c["lr"], betas=(c["beta1"], c["beta2"]),
                            eps=c["eps"], weight_decay=c["weight_decay"])


def train_step(model, opt, x, eps, step, y=None):
    """One vae_train_step with eps given: forward, backward, clip, Adam.
    Returns the loss before the step (a float)."""
    opt.zero_grad()
    loss, _, _ = model.loss(x, eps, step, y)
    loss.backward()
    if model.config["clip_grad"] > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), model.config["clip_grad"])
    opt.step()
    return loss.item()


# ---------- safetensors, by hand ----------

def save_safetensors(path, tensors, metadata=None):
    """tensors: {name: tensor}, written as F32 little-endian in the given order."""
    header = {}
    blobs = []
    pos = 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [pos, pos + len(data)]}
        blobs.append(data)
        pos += len(data)
    if metadata:
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data area 8-byte aligned, as the C writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """Returns ({name: float32 tensor}, metadata dict). F32 tensors only."""
    import numpy as np
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack_from("<Q", buf, 0)
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    data = buf[8 + n:]
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError("%s: dtype %s, only F32 is supported" % (name, info["dtype"]))
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype="<f4").copy().reshape(info["shape"])
        out[name] = torch.from_numpy(arr)
    return out, meta

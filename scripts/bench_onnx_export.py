#!/usr/bin/python3
"""Exports a vaed checkpoint to ONNX for the ONNX Runtime reference of
scripts/bench-onnx.sh, with Debian's python3-torch only:

    /usr/bin/python3 scripts/bench_onnx_export.py CKPT.safetensors OUT_DIR

writes OUT_DIR/encoder.onnx  x (n, D) -> mu (n, Z), logvar (n, Z)
       OUT_DIR/decoder.onnx  z (n, Z) -> x (n, D), the likelihood's mean in [0, 1]
       OUT_DIR/model.json    {"D", "Z", "height", "width"}
with the batch axis dynamic. The weights are the checkpoint's, loaded into
tests/ref/vae_torch.py's model (the reference the C engine is tested
against), so what the export computes is what vaed's /encode and /decode
answer. torch.onnx.export here is the TorchScript exporter (torch 1.13 has no
other), which writes the protobuf itself: the onnx Python package is not
needed. A conditional model (n_classes > 0) is refused: its endpoints take
labels the reference server does not speak.
"""
import json
import os
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import vae_torch  # noqa: E402

OPSET = 13  # every onnxruntime since 1.7 runs it; torch 1.13 writes up to 17


class Half(torch.nn.Module):
    """One half of the VAE as its own graph: part is "encode" or "decode"."""

    def __init__(self, vae, part):
        super().__init__()
        self.vae = vae
        self.part = part

    def forward(self, t):
        return getattr(self.vae, self.part)(t)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ckpt, out_dir = sys.argv[1], sys.argv[2]
    state, meta = vae_torch.load_safetensors(ckpt)
    config = json.loads(meta["vaed_config"])
    if int(config.get("n_classes", 0)) > 0:
        sys.exit("bench_onnx_export: %s is a conditional model; the benchmark needs an unconditional one" % ckpt)
    model = vae_torch.VAE(config)
    model.load_state_dict(state, strict=True)
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    batch = {0: "n"}
    with torch.no_grad():
        torch.onnx.export(Half(model, "encode"), torch.zeros(1, model.D), os.path.join(out_dir, "encoder.onnx"),
                          input_names=["x"], output_names=["mu", "logvar"], opset_version=OPSET,
                          dynamic_axes={"x": batch, "mu": batch, "logvar": batch})
        torch.onnx.export(Half(model, "decode"), torch.zeros(1, model.Z), os.path.join(out_dir, "decoder.onnx"),
                          input_names=["z"], output_names=["x"], opset_version=OPSET,
                          dynamic_axes={"z": batch, "x": batch})
    shape = {"D": model.D, "Z": model.Z, "height": config["height"], "width": config["width"]}
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(shape, f)
    print("bench_onnx_export: %s -> %s/{encoder,decoder}.onnx (opset %d, torch %s)"
          % (ckpt, out_dir, OPSET, torch.__version__))


if __name__ == "__main__":
    main()

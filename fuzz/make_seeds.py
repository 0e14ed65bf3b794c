"""Writes the fuzzers' starting corpus (fuzz/seeds/<target>/): a small valid input of every
kind each target reads, for libFuzzer to mutate. Needs `pip install torch pillow`.

    python3 fuzz/make_seeds.py
"""

import io
import json
import os
import pathlib

import torch
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent / "seeds"


def write(target, name, data):
    folder = ROOT / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / name).write_bytes(data)


def dataset_files():
    # First byte: the layout (see fuzz_targets/dataset_files.rs); files are split at NUL.
    token = "1.jpg#0\tA dog runs .\n1.jpg#1\tA dog is running on the grass\na b.jpg#0\tTwo men.\n"
    write("dataset_files", "flickr_token", b"\x00" + "\0".join([token, "1.jpg\n", "a b.jpg\n"]).encode())
    write("dataset_files", "kaggle_csv", b"\x01" + b'image,caption\n1.jpg,"A dog, running"\na b.jpg,Two men .\n')
    write("dataset_files", "flickr30k_csv", b"\x02" + b"image_name| comment_number| comment\n1.jpg| 0| A dog .\n")
    karpathy = {
        "images": [
            {"filename": "1.jpg", "split": "train", "sentences": [{"tokens": ["a", "dog"]}]},
            {"filename": "a b.jpg", "split": "val", "sentences": [{"tokens": ["two", "men"]}]},
            {"filename": "x.jpg", "filepath": "sub", "split": "restval", "sentences": []},
        ]
    }
    write("dataset_files", "karpathy_json", b"\x03" + json.dumps(karpathy).encode())
    train = {
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg"}],
        "annotations": [{"image_id": 1, "caption": "A cat on a mat."}],
    }
    val = {
        "images": [{"id": 2, "file_name": "COCO_val2014_000000000002.jpg"}],
        "annotations": [{"image_id": 2, "caption": "A bus."}, {"image_id": 3, "caption": "?"}],
    }
    write("dataset_files", "coco_json", b"\x04" + json.dumps(train).encode() + b"\0" + json.dumps(val).encode())


def caption_text():
    write("caption_text", "captions", b"\x01A dog's ball isn't here.\nThey're gonna go to AT&T, y'all!\n\"Quoted\" (words) -- and 3.5 dots...\n")
    write("caption_text", "vocab", b"\x00" + json.dumps({"words": ["<pad>", "<start>", "<end>", "<unk>", "a", "dog"]}).encode())


def pictures():
    image = Image.new("RGB", (9, 7))
    for x in range(9):
        for y in range(7):
            image.putpixel((x, y), (x * 28, y * 36, 128))
    for name, mode, fmt, options in [
        ("rgb.jpg", "RGB", "JPEG", {}),
        ("progressive.jpg", "RGB", "JPEG", {"progressive": True}),
        ("gray.jpg", "L", "JPEG", {}),
        ("cmyk.jpg", "CMYK", "JPEG", {}),
        ("rgb.png", "RGB", "PNG", {}),
        ("alpha.png", "RGBA", "PNG", {}),
        ("gray16.png", "I;16", "PNG", {}),
        ("palette.png", "P", "PNG", {}),
    ]:
        buffer = io.BytesIO()
        image.convert(mode).save(buffer, fmt, **options)
        write("pictures", name, buffer.getvalue())


def pth_layouts():
    torch.manual_seed(0)
    kernel = torch.randn(2, 3, 1, 2)
    state = {
        "conv.weight": kernel.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1),  # a view
        "bn.running_mean": torch.zeros(2),
        "bn.num_batches_tracked": torch.tensor(0),
        "head": {"fc.weight": torch.ones(1, 2, dtype=torch.float16)},
    }
    for name, zipped in [("zip.pth", True), ("legacy.pth", False)]:
        buffer = io.BytesIO()
        torch.save(state, buffer, _use_new_zipfile_serialization=zipped)
        write("pth_layouts", name, buffer.getvalue())


if __name__ == "__main__":
    dataset_files()
    caption_text()
    pictures()
    pth_layouts()
    for target in sorted(os.listdir(ROOT)):
        print(target, len(os.listdir(ROOT / target)), "files")

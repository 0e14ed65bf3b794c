"""Sets the captions of two runs side by side with a human caption, as a markdown table.

Inputs are the files `eval model` writes:

    eval model --model artifacts/ce   --split dev --results-out /tmp/before.json \
        --references-out /tmp/refs.json
    eval model --model artifacts/scst --split dev --results-out /tmp/after.json
    python3 bench/compare_captions.py /tmp/before.json /tmp/after.json /tmp/refs.json --count 10

The images are spread evenly over the split (every len/count-th, in image-id order), so the
choice does not depend on the captions.
"""

import argparse
import json


def captions_by_image(path):
    with open(path) as f:
        return {r["image_id"]: r["caption"] for r in json.load(f)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", help="COCO results JSON of the first run")
    parser.add_argument("after", help="COCO results JSON of the second run")
    parser.add_argument("references", help="COCO annotations JSON of the split")
    parser.add_argument("--count", type=int, default=10, help="images to show")
    parser.add_argument(
        "--names", nargs=2, default=["before", "after"], help="column names of the two runs"
    )
    args = parser.parse_args()

    before = captions_by_image(args.before)
    after = captions_by_image(args.after)
    with open(args.references) as f:
        annotations = json.load(f)
    human = {}
    for a in annotations["annotations"]:
        human.setdefault(a["image_id"], a["caption"])
    files = {i["id"]: i.get("file_name", str(i["id"])) for i in annotations.get("images", [])}

    images = sorted(set(before) & set(after) & set(human))
    step = max(1, len(images) // args.count)
    chosen = images[::step][: args.count]
    first, second = args.names
    print(f"| picture | {first} | {second} | a human caption |")
    print("|---|---|---|---|")
    for image in chosen:
        print(f"| {files.get(image, image)} | {before[image]} | {after[image]} | {human[image]} |")


if __name__ == "__main__":
    main()

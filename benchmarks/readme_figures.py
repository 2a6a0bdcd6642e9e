"""README figures: ``tseg segment`` overlays on real photographs and on a `shapes` test image.

    python benchmarks/readme_figures.py runs/demo      # an offline-preset checkpoint on `shapes`

The photographs are scikit-image's samples (the `dev` extra), saved as JPEG first so the whole
file path of ``tseg segment`` runs (decoding workers included), 240 px high. Every photo gets the same four
colour expressions in the `shapes` vocabulary's "C shapes" form: a model trained on synthetic
shapes knows colour words, not cats or cups, and one fixed list (rather than phrases chosen per
photo) shows what it does with colours that are present and with one that mostly is not. The
`shapes` test image gets its first four annotated expressions.

Each image is segmented twice, as the checkpoint's defaults give it and with ``--crf`` (skipped
when pydensecrf is missing). Writes to ``--out`` (default docs/):

- ``segment_photos.png``: one row per photo, left plain, right ``--crf``;
- ``segment_shapes.png``: the `shapes` test image, the same two columns;
- ``segment_figures.json``: every expression's confidence and mask area per image and option.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image

from tseg.checkpoint import load_checkpoint
from tseg.cli import main as tseg_main
from tseg.data import build_dataset
from tseg.inference.crf import crf_available

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
PHRASES = ("red shapes", "orange shapes", "blue shapes", "green shapes")
# Photos are saved this many pixels high: the model sees its 96 px input either way, and at
# this size the overlays' legend text stays readable in the README without rescaling.
PHOTO_HEIGHT = 240


def segment(ckpt: str, images: Path, phrases: list[str], out: Path, extra: list[str]) -> None:
    args = ["segment", ckpt, str(images), *phrases, "--out", str(out), "--quiet", *extra]
    if tseg_main(args) != 0:
        sys.exit(f"tseg {' '.join(args)} failed")


def sheet(rows: list[list[Image.Image]], gap: int = 6) -> Image.Image:
    """Paste images in a grid (rows of columns)."""
    w = max(sum(im.width for im in r) + gap * (len(r) - 1) for r in rows)
    h = sum(max(im.height for im in r) for r in rows) + gap * (len(rows) - 1)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    y = 0
    for r in rows:
        x = 0
        for im in r:
            canvas.paste(im, (x, y))
            x += im.width + gap
        y += max(im.height for im in r) + gap
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a run or checkpoint folder trained on `shapes`")
    ap.add_argument("--out", default="docs", help="where the figures go (default docs/)")
    ap.add_argument("--shapes-index", type=int, default=0, help="which `shapes` test image")
    args = ap.parse_args()
    import skimage.data

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _, cfg, _ = load_checkpoint(args.checkpoint, "cpu")
    variants = {"plain": []} | ({"crf": ["--crf"]} if crf_available() else {})
    report: dict[str, dict] = {"checkpoint": args.checkpoint, "images": {}}
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for name in PHOTOS:
            im = Image.fromarray(getattr(skimage.data, name)())
            size = (round(im.width * PHOTO_HEIGHT / im.height), PHOTO_HEIGHT)
            im.resize(size, Image.LANCZOS).save(photos / f"{name}.jpg", quality=92)
        test = build_dataset(cfg.data, "test")
        shapes = Path(tmp) / "shapes_test.png"
        Image.fromarray(test.image(args.shapes_index)).save(shapes)
        exprs = test.expressions(args.shapes_index)[:4]
        for variant, extra in variants.items():
            results = Path(tmp) / variant
            segment(args.checkpoint, photos, list(PHRASES), results, extra)
            segment(args.checkpoint, shapes, exprs, results, extra)
            for name in [*PHOTOS, "shapes_test"]:
                scores = json.loads((results / name / "scores.json").read_text())
                report["images"].setdefault(name, {})[variant] = {
                    s["expression"]: {"confidence": s["confidence"], "area": s["area_fraction"]}
                    for s in scores
                }
        overlays = {
            name: [
                Image.open(Path(tmp) / v / name / "overlay.png").convert("RGB") for v in variants
            ]
            for name in [*PHOTOS, "shapes_test"]
        }
        figures = {
            "segment_photos.png": sheet([overlays[n] for n in PHOTOS]),
            "segment_shapes.png": sheet([overlays["shapes_test"]]),
        }
        for file, pic in figures.items():
            # 256 colours: a third of the bytes, no visible loss at README size.
            pic.quantize(256).save(out / file, optimize=True)
            print(out / file)
    report["columns"] = list(variants)
    (out / "segment_figures.json").write_text(json.dumps(report, indent=1) + "\n")
    for name, by_variant in report["images"].items():
        print(name)
        for variant, scores in by_variant.items():
            line = ", ".join(
                f"{e} {v['confidence']:.2f} ({v['area']:.2f})" for e, v in scores.items()
            )
            print(f"  {variant:5s} {line}")


if __name__ == "__main__":
    main()

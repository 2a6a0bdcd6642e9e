"""Pictures in and out of ``tseg serve``, with memory bounded by the options, not the upload.

In: the upload is opened from its header, refused above ``max_pixels`` before decoding, decoded
at a reduced scale where the format allows it (JPEG's DCT scaling through ``Image.draft``), then
resized with ``reducing_gap`` (whole-factor ``Image.reduce`` first), so that only a picture of
the model's input size (and one of the overlay's) outlives the decode.

Out: the model's probability maps come at its input size; each is enlarged on its own to the
mask size (the upload's size, capped at ``mask_side``), thresholded and encoded (PNG or COCO
RLE), so a request never holds more than one full-size map.
"""

from __future__ import annotations

import base64
import io
import json
import math
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import (  # noqa: F401 - importing a plugin registers its format with Image.open
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from ..export.numpy_ops import eval_size
from ..inputs import InputError, check_shape, pil_to_rgb
from ..viz import colour, overlay

# Formats an upload may be in. Pillow can open more (EPS, for one, through Ghostscript), and a
# public endpoint should not hand uploads to decoders nobody asked for.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG opens MPO (phone photos) too
OVERLAY_SIDE = 768  # the overlay shown in the page is at most this long
REDUCING_GAP = 3.0  # see Image.resize: at 3 and above, as good as one full resample
_RESIZABLE = {"L", "LA", "La", "I", "F", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
_ORIENTATION = 0x0112  # EXIF tag
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass
class Decoded:
    """An upload decoded for one request."""

    model_image: np.ndarray  # uint8 RGB [h, w, 3] at the model's input size (eval_size)
    width: int  # the upload's size, after its EXIF orientation
    height: int
    preview: np.ndarray | None  # uint8 RGB, longest side <= OVERLAY_SIDE; None: not asked for


def _resizable(im: Image.Image) -> Image.Image:
    """``im`` in a mode whose pixels can be averaged (``Image.resize`` falls back to nearest
    neighbour for palettes, and refuses some modes)."""
    if im.mode in ("P", "PA"):
        keep_alpha = im.mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if keep_alpha else "RGB")
    if im.mode == "1":
        return im.convert("L")
    if im.mode.startswith("I;16"):  # 16-bit grey -> 8 bits, scaled as tseg.inputs does
        a = np.asarray(im).astype(np.uint32)
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
    if im.mode not in _RESIZABLE:
        return im.convert("RGB")
    return im


def longest_at_most(w: int, h: int, side: int) -> tuple[int, int]:
    """(w, h) shrunk (never enlarged) so that the longer side is at most ``side``."""
    f = min(1.0, side / max(w, h))
    return max(1, round(w * f)), max(1, round(h * f))


def decode_upload(
    data: bytes, label: str, max_pixels: int, model_size: tuple[int, int], preview: bool
) -> Decoded:
    """Image file bytes -> the model's input (and the overlay's picture), bounded in memory.

    ``model_size`` is (shorter side, multiple): the image is resized as ``eval_size`` says, so
    that the model does not resize it again.

    Raises:
        InputError: not an image of an accepted format, unreadable, or above ``max_pixels``.
    """
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except UnidentifiedImageError:
        raise InputError(
            f"'{label}' is not an image this server reads ({', '.join(FORMATS)})"
        ) from None
    except Image.DecompressionBombError:  # Pillow's own limit, checked as it opens the file
        raise InputError(
            f"image '{label}' has more pixels than Pillow will open, above the limit of "
            f"{max_pixels:,}"
        ) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError(f"'{label}' could not be read: {e}") from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise InputError(
                f"image '{label}' is {w} x {h} = {w * h:,} pixels, above the limit of "
                f"{max_pixels:,}"
            )
        check_shape(w, h, label)
        try:
            orientation = int(im.getexif().get(_ORIENTATION, 1))
        except Exception:  # noqa: BLE001 - a broken EXIF block only loses the orientation
            orientation = 1
        turned = orientation in (5, 6, 7, 8)  # EXIF says: shown with width and height swapped
        dw, dh = (h, w) if turned else (w, h)
        mh, mw = eval_size(dh, dw, *model_size)
        sizes = [(mw, mh)] + ([longest_at_most(dw, dh, OVERLAY_SIDE)] if preview else [])
        sizes = [(b, a) if turned else (a, b) for a, b in sizes]  # as the file stores them
        need = (max(a for a, _ in sizes), max(b for _, b in sizes))
        try:
            # JPEG: decode at 1/2, 1/4 or 1/8 scale when that still leaves REDUCING_GAP times
            # the size needed (other formats decode at full size; the limit bounds that).
            im.draft(None, (math.ceil(need[0] * REDUCING_GAP), math.ceil(need[1] * REDUCING_GAP)))  # fmt: skip
            im.load()
            pic = _resizable(im)
            out = [_turn(_resize(pic, size), orientation) for size in sizes]
            del pic  # the full-size picture goes with ``im`` when the block ends
            pictures = [pil_to_rgb(p) for p in out]
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise InputError(f"'{label}' could not be read: {e}") from None
    return Decoded(pictures[0], dw, dh, pictures[1] if preview else None)


def _resize(pic: Image.Image, size: tuple[int, int]) -> Image.Image:
    if pic.size == size:
        return pic
    # Shrinks by whole factors first (Image.reduce), then resamples by at least REDUCING_GAP:
    # close to one antialiased resize of the full picture, much cheaper.
    return pic.resize(size, Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)


def _turn(pic: Image.Image, orientation: int) -> Image.Image:
    return pic.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else pic


def upsample(prob: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 [h, w] probability map -> (W, H) ``size``, bilinear."""
    if (prob.shape[1], prob.shape[0]) == size:
        return prob
    pic = Image.fromarray(np.ascontiguousarray(prob, dtype=np.float32), mode="F")
    return np.asarray(pic.resize(size, Image.Resampling.BILINEAR))


def png_bytes(a: np.ndarray | Image.Image) -> bytes:
    pic = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def mask_png(mask: np.ndarray) -> bytes:
    """bool [H, W] -> an 8-bit PNG, 255 inside the mask (the files ``tseg segment`` writes)."""
    return png_bytes(mask.astype(np.uint8) * 255)


def coco_rle(mask: np.ndarray) -> dict:
    """bool [H, W] -> COCO's compressed RLE ``{"size": [H, W], "counts": str}``, as
    ``pycocotools.mask.encode`` writes it (column-major runs, first run of zeros, each count
    stored as the difference to the one two before, 5 bits per character)."""
    h, w = mask.shape
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size])))
    if flat[0]:
        runs = np.concatenate(([0], runs))
    out = []
    counts = runs.tolist()
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        while True:
            ch = x & 0x1F
            x >>= 5  # arithmetic shift, as the C code does on a signed long
            more = x != -1 if ch & 0x10 else x != 0
            out.append(chr(ch + 48 + (0x20 if more else 0)))
            if not more:
                break
    return {"size": [h, w], "counts": "".join(out)}


def overlay_png(
    preview: np.ndarray, masks: np.ndarray, labels: list[str], conf: list[float]
) -> bytes:
    """``tseg.viz.overlay`` for the page: masks [L, h, w] at the preview's size; small images are
    enlarged so that the legend stays readable."""
    scale = max(1, 320 // max(1, min(preview.shape[:2])))
    return png_bytes(overlay(preview, masks, labels, conf, scale=scale))


def masks_zip(files: list[tuple[str, bytes]], scores: list[dict]) -> bytes:
    """The masks as PNG files plus ``scores.json``, the files ``tseg segment`` writes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
        z.writestr("scores.json", json.dumps(scores, indent=1))
    return buf.getvalue()


def colour_hex(k: int) -> str:
    r, g, b = colour(k)
    return f"#{r:02x}{g:02x}{b:02x}"

"""Images and expressions in, checked, without torch: shared by the torch inference path
(``tseg.inference``), the ONNX Runtime path (``tseg.export.ort_segmenter``) and ``tseg serve``,
so a torch-free deployment has the same rules and messages. The result types they return are in
``tseg.results``.
"""

from __future__ import annotations

import threading
import unicodedata
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

# Images above this many pixels are refused before decoding (a decompression bomb is a few KB
# on disk and gigabytes in memory). Raise it with load_image(..., max_pixels=N) or --max-pixels.
MAX_PIXELS = 100_000_000


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 RGB. 16- and 32-bit grayscale are rescaled, not clipped at 255."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") else max(float(a.max()), 1.0)
        g = (a.clip(0, top) / top * 255.0).round().astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if im.mode == "F":
        g = (np.nan_to_num(np.asarray(im)).clip(0, 1) * 255).round().astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite transparent pixels on white rather than on whatever colour they hide.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(bg, rgba).convert("RGB"))
    return np.array(im.convert("RGB"))


# Pillow's own decompression-bomb limit is a module global; load_image replaces it by its
# max_pixels while it opens and decodes a file, one call at a time.
_PILLOW_LIMIT = threading.Lock()


@contextmanager
def _pillow_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's ``MAX_IMAGE_PIXELS`` set to ``max_pixels`` (None: no check) and its
    ``DecompressionBombWarning`` silenced inside the block, restored after it.

    tseg's ``max_pixels`` is then the only limit: Pillow would otherwise refuse anything above
    2 x its default (about 179 megapixels) whatever ``--max-pixels`` says, and print a raw
    warning between its warning and error sizes. Other threads that open images meanwhile see
    the same setting, which the lock keeps from interleaving with another call's.
    """
    with _PILLOW_LIMIT, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


#: The longest side over the shortest that an image may have. The model sees the shorter side
#: at its input size and keeps the aspect, so a 10000 x 1 PNG asked for 2.9 GB (torch) and
#: 6.5 TB (ONNX Runtime); 16:1 already covers panoramas and banners.
MAX_ASPECT = 16


def check_shape(w: int, h: int, name: str) -> None:
    """Refuse an image ``name`` of ``w`` x ``h`` pixels that no model input can be made of:
    an empty side or sides more than ``MAX_ASPECT`` apart (before anything is allocated)."""
    if w < 1 or h < 1:
        raise InputError(f"image '{name}' is {w} x {h} pixels: a side is empty")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise InputError(
            f"image '{name}' is {w} x {h} pixels, an aspect of {max(w, h) / min(w, h):.0f}:1, "
            f"above the limit of {MAX_ASPECT}:1 (crop or pad it first)"
        )


def open_image(im: Image.Image, name: str, max_pixels: int) -> np.ndarray:
    """An opened (not yet decoded) PIL image -> uint8 RGB, refusing it above ``max_pixels``."""
    w, h = im.size
    if w * h > max_pixels:
        raise InputError(
            f"image '{name}' is {w} x {h} = {w * h:,} pixels, above the limit of "
            f"{max_pixels:,} (raise it with max_pixels / --max-pixels if you trust the file)"
        )
    check_shape(w, h, name)
    try:
        return pil_to_rgb(ImageOps.exif_transpose(im))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"image '{name}' could not be read: {e}") from None


def load_image(
    image: str | Path | Image.Image | np.ndarray, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """A path, PIL image or array -> uint8 RGB [H, W, 3], honouring EXIF orientation."""
    if isinstance(image, (str, Path)):
        p = Path(image)
        if not p.is_file():
            raise InputError(f"image '{p}' does not exist")
        if p.stat().st_size == 0:
            raise InputError(f"image '{p}' is empty (0 bytes)")
        try:
            # Opening reads the header only, so Pillow's check is off for it: open_image then
            # refuses a file above max_pixels with tseg's message (W x H) before decoding.
            # Decoding keeps a check at max_pixels for sizes met later (e.g. a GIF's frames).
            with _pillow_limit(None):
                im = Image.open(p)
            with im, _pillow_limit(max_pixels):
                return open_image(im, str(p), max_pixels)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"image '{p}' could not be read: {e}") from None
    if isinstance(image, Image.Image):
        check_shape(*image.size, "the PIL image")
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
            raise InputError(
                f"image array must be [H, W], [H, W, 3] or [H, W, 4], got shape {a.shape}"
            )
        check_shape(a.shape[1], a.shape[0], f"array of shape {a.shape}")
        a = a[:, :, :3]
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and a.size and a.min() >= 0 and a.max() <= 1:
                a = (a * 255).round()
            a = a.clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(a)
    raise InputError(f"unsupported image type {type(image).__name__}")


def expressions_per_image(
    n: int,
    expressions: Sequence[str] | Sequence[Sequence[str]],
    maps_for: Sequence[int] | None = None,
) -> tuple[list[list[str]], list[int]]:
    """``maps``'s arguments, the same for every inference path: the same L expressions for all
    ``n`` images or one list per image -> (a list per image, maps wanted per image)."""
    if all(isinstance(e, str) for e in expressions):
        per_image = [list(expressions)] * n  # type: ignore[arg-type]
    else:
        per_image = [list(e) for e in expressions]
    if len(per_image) != n:
        raise InputError(f"{n} images but {len(per_image)} lists of expressions")
    keep = [len(t) for t in per_image] if maps_for is None else list(maps_for)
    return per_image, keep


def size_groups(
    images: Sequence[np.ndarray], input_shape: Callable[[int, int], tuple[int, int]]
) -> dict[tuple[int, int], list[int]]:
    """Image indices by model input size (``input_shape(H, W)``), in order: each group is one
    image-encoder batch."""
    groups: dict[tuple[int, int], list[int]] = {}
    for b, im in enumerate(images):
        groups.setdefault(input_shape(*im.shape[:2]), []).append(b)
    return groups


def clean_expression(e: object, limit: int | None = None) -> str:
    """An expression with runs of white space (newlines, tabs) made one space; one that is not
    text, is empty, is over ``limit`` characters or holds another control character (or a lone
    UTF-16 surrogate) is an InputError. Emoji joiners and other format characters are kept."""
    if not isinstance(e, str):
        raise InputError(f"each expression must be text, got {type(e).__name__}")
    text = " ".join(e.split())
    if not text:
        raise InputError(f"expression {e!r} is empty")
    if limit is not None and len(text) > limit:
        raise InputError(
            f"expression '{text[:40]}...' is {len(text)} characters long; the limit is {limit}"
        )
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        raise InputError(f"expression {text[:40]!r} holds a control character")
    return text


def check_expressions(expressions: list[str] | str) -> list[str]:
    """The expressions, each through ``clean_expression``; an empty list is an InputError."""
    if isinstance(expressions, str):
        expressions = [expressions]
    if not expressions:
        raise InputError("no expressions given: pass at least one referring expression")
    return [clean_expression(e) for e in expressions]

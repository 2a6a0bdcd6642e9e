"""Deployment: ONNX export of a checkpoint and a torch-free ONNX Runtime inference path, and
the Hugging Face Hub's model-repo layout.

``onnx_export`` (needs torch) writes the two encoders as ONNX graphs plus ``tseg_onnx.json``;
``ort_segmenter`` (numpy, tokenizers and onnxruntime only) segments with them; ``hf`` writes a
checkpoint as a Hub model repo folder with its model card (``tseg export hf``). This package's
``__init__`` imports nothing, so ``tseg.export.ort_segmenter`` loads without torch.
"""

from pathlib import Path

from ..errors import ExportError

__all__ = ["ExportError", "check_out"]


def check_out(out: Path, marker: str) -> None:
    """An export's ``--out``: a new or empty folder, or one an earlier export of this kind wrote
    (it holds ``marker``); a folder of other files is refused, so no README.md or weights of
    the user's are overwritten."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out '{out}' is a file, not a folder")
    if out.is_dir() and not (out / marker).exists():
        held = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if held:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise ExportError(
                f"--out '{out}' holds other files ({shown}) and no earlier export ('{marker}'): "
                "give a new or empty folder"
            )

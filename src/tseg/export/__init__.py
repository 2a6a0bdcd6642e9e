"""Deployment: ONNX export of a checkpoint and a torch-free ONNX Runtime inference path.

``onnx_export`` (needs torch) writes the two encoders as ONNX graphs plus ``tseg_onnx.json``;
``ort_segmenter`` (numpy, tokenizers and onnxruntime only) segments with them. This package's
``__init__`` imports nothing, so ``tseg.export.ort_segmenter`` loads without torch.
"""


class ExportError(ValueError):
    """An export is impossible, or an export folder is missing, incomplete or of another format;
    the message says which."""

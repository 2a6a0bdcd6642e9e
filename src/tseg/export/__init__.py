"""Deployment: ONNX export of a checkpoint and a torch-free ONNX Runtime inference path.

``onnx_export`` (needs torch) writes the two encoders as ONNX graphs plus ``tseg_onnx.json``;
``ort_segmenter`` (numpy, tokenizers and onnxruntime only) segments with them. This package's
``__init__`` imports nothing, so ``tseg.export.ort_segmenter`` loads without torch.
"""

from ..errors import ExportError

__all__ = ["ExportError"]

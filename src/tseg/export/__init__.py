"""Deployment: ONNX export of a checkpoint and a torch-free ONNX Runtime inference path, and
the Hugging Face Hub's model-repo layout.

``onnx_export`` (needs torch) writes the two encoders as ONNX graphs plus ``tseg_onnx.json``;
``ort_segmenter`` (numpy, tokenizers and onnxruntime only) segments with them; ``hf`` writes a
checkpoint as a Hub model repo folder with its model card (``tseg export hf``). This package's
``__init__`` imports nothing, so ``tseg.export.ort_segmenter`` loads without torch.
"""

from ..errors import ExportError

__all__ = ["ExportError"]

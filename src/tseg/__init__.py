"""tseg: text-grounded image segmentation learned without pixel labels (TSEG)."""

__version__ = "0.1.0"

"""Loaders of the paper's datasets: RefCOCO, RefCOCO+, RefCOCOg, gRefCOCO, PhraseCut, Pascal VOC.

Each module reads one release's files as published (docs/datasets.md says where to get them)
and has the ``build(cfg, split)`` its registry entry points at (``tseg.data.registry``); their
checks are in ``tseg.data.check``.
"""

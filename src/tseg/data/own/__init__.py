"""Loaders of a user's own data: ImageFolder, COCO captions and instances, WebDataset shards,
Hugging Face ``datasets`` (docs/own_data.md).

``weak`` holds what the text-only formats share (expression records, ``WeakDataset``);
``coco_layout`` where a COCO file and its images are in each tool's export. Each loader has the
``build(cfg, split)`` its registry entry points at (``tseg.data.registry``); their checks are in
``tseg.data.check.own``.
"""

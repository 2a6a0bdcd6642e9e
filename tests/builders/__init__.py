"""Fixture builders the test files share: each writes a small dataset (or another input) in the
layout its reader expects, with contents the tests know. One module per layout, as in
``tseg.data``; test files import from the module (``from builders.voc import make_voc``), never
from another test file.

    refcoco     the refer toolkit's RefCOCO folder (refs pickle, instances.json, JPEGs)
    grefcoco    gRefCOCO's grefs(unc).json + instances.json
    phrasecut   VGPhraseCut_v0 (refer_<split>.json, image_data_split.json, images/)
    voc         VOCdevkit/VOC2012 with SBD labels and the ImageSets lists
    coco        COCO instances and captions files with their images
    imagefolder a Hugging Face ImageFolder with metadata.jsonl
    shards      WebDataset tar samples
    hf          Hugging Face ``datasets`` tables (import after importorskip("datasets"))
    photos      a folder of photos for tseg segment, one of them corrupt
    serve       tseg serve's inputs: a micro checkpoint, encoded pictures, multipart bodies
"""

"""``tseg export hf``: a checkpoint as a Hugging Face Hub model repo, ready for ``hf upload``.

The folder holds the checkpoint's own files (``model.safetensors``, ``config.yaml``,
``meta.json``, ``tokenizer.json``, unchanged), the transformers config of a pretrained text
encoder (``text_encoder/config.json``, so the model rebuilds without its text encoder's repo)
and a model card ``README.md`` whose YAML block (license, tags, datasets, metrics, model-index)
is written by huggingface_hub's ``ModelCardData``. ``Segmenter.from_pretrained("org/name")``,
``tseg segment org/name ...`` and ``tseg eval org/name ...`` load it back from the cache; no
code in the repo is ever run and only safetensors weights are read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from ..checkpoint import CONFIG, META, TOKENIZER, WEIGHTS, load_checkpoint, resolve
from ..errors import ExportError
from ..hub import TEXT_CONFIG, repo_id
from . import check_out

# metrics.json keys -> the Hub's metric ids (https://huggingface.co/metrics) and display names.
METRIC_IDS = {"miou": ("mean_iou", "mIoU"), "oiou": ("overall_iou", "oIoU")}
TAGS = [
    "tseg",
    "image-segmentation",
    "referring-image-segmentation",
    "text-grounded-segmentation",
    "weakly-supervised",
    "safetensors",
]


def run_metrics(ckpt: Path) -> dict[str, Any]:
    """The run's ``metrics.json`` (beside the checkpoint, or in its run folder), else {}."""
    for f in (ckpt / "metrics.json", ckpt.parent / "metrics.json"):
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ExportError(f"'{f}' is not valid JSON: {e}") from None
            return data if isinstance(data, dict) else {}
    return {}


def model_card(cfg: dict[str, Any], metrics: dict[str, Any], name: str, license: str) -> str:
    """README.md: the Hub's YAML metadata block, then how to use the model and how it was made."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model, data = cfg.get("model", {}), cfg.get("data", {})
    dataset = str(data.get("dataset", ""))
    results = []
    for split, values in metrics.items():
        # metrics.json also holds the threshold choices ("threshold", "presence_threshold":
        # a val mIoU each), which are not splits
        if not isinstance(values, dict) or split.endswith("threshold"):
            continue
        for key, (metric_id, label) in METRIC_IDS.items():
            v = values.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                results.append(
                    EvalResult(
                        task_type="image-segmentation",
                        task_name="Referring image segmentation",
                        dataset_type=dataset,
                        dataset_name=dataset,
                        dataset_split=split,
                        metric_type=metric_id,
                        metric_value=round(float(v), 4),
                        metric_name=label,
                    )
                )
    bases = [
        r
        for w in (model.get("image", {}).get("weights", ""), model.get("text", {}).get("weights"))
        if w and (r := repo_id(str(w))) is not None
    ]
    card_data = ModelCardData(
        license=license,
        library_name="tseg",
        pipeline_tag="image-segmentation",
        tags=TAGS,
        datasets=[dataset] if dataset else None,
        metrics=sorted({r.metric_type for r in results}) or None,
        base_model=bases or None,
        model_name=name,
        eval_results=results or None,
    )
    rows = [f"| {r.dataset_split} | {r.metric_name} | {r.metric_value} |" for r in results]
    table = "\n".join(["| split | metric | value |", "|---|---|---|", *rows])
    if not results:
        table = "No metrics.json was found with the checkpoint."
    text_files = ""
    if model.get("text", {}).get("name") in ("pretrained", "minilm"):
        text_files = ", `text_encoder/config.json` (the pretrained text encoder's architecture)"
    body = f"""
# {name}

A TSEG (`pip install tseg`) text-grounded segmentation model: an image and referring
expressions in, one mask per expression out. Image encoder `{model.get("image", {}).get("name")}`,
text encoder `{model.get("text", {}).get("name")}`, pooling head `{model.get("head")}`, trained on
`{dataset}` at {data.get("image_size")} px.

## Use

```bash
pip install tseg
tseg segment {name} photo.jpg "the red circle" "blue shapes" --out out/
```

```python
from tseg.inference import Segmenter

seg = Segmenter.from_pretrained("{name}")
for p in seg.predict("photo.jpg", ["the red circle"]):
    print(p.expression, p.confidence, p.mask.shape)
```

Loading reads only `model.safetensors`, YAML and JSON: no code from this repo is run. Offline,
fetch it first on a connected machine (`hf download {name}`) and set `HF_HUB_OFFLINE=1`.

## Results

{table}

## Files

`model.safetensors` (weights), `config.yaml` (the resolved training config, below), `meta.json`,
`tokenizer.json` (the tokenizer the text embeddings index){text_files}.

## Training config

```yaml
{yaml.safe_dump(cfg, sort_keys=False).rstrip()}
```
"""
    return str(ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}"))


def export_hf(
    checkpoint: str | Path,
    out: str | Path,
    name: str | None = None,
    license: str = "apache-2.0",
) -> Path:
    """Write ``checkpoint`` as a Hub model repo folder ``out``; returns ``out``.

    Args:
        checkpoint: a checkpoint folder, a run folder or a TSEG model's hub name.
        out: the folder to write (created; files of the same names are replaced).
        name: the repo name the card uses (``org/name``; default: the folder's name).
        license: the card's licence id (the Hub's list, e.g. apache-2.0, mit, cc-by-4.0).

    Raises:
        CheckpointError: the checkpoint is missing, incomplete or does not load.
        ExportError: ``out`` is a file.
    """
    if name is not None:  # the Hub's own rule for a repo id, before anything is written
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(name)
        except HFValidationError as e:
            raise ExportError(f"--repo {name!r} is not a Hub repo id (ORG/NAME): {e}") from None
    ckpt = resolve(checkpoint)
    model, _, _ = load_checkpoint(ckpt)  # it must load before it is published
    out = Path(out)
    check_out(out, WEIGHTS)
    out.mkdir(parents=True, exist_ok=True)
    for f in (WEIGHTS, CONFIG, META, TOKENIZER):
        shutil.copyfile(ckpt / f, out / f)
    text_cfg = getattr(getattr(model.text_encoder, "encoder", None), "config", None)
    if text_cfg is not None:  # a pretrained transformers text encoder
        (out / TEXT_CONFIG).parent.mkdir(exist_ok=True)
        text_cfg.to_json_file(str(out / TEXT_CONFIG))
    cfg = yaml.safe_load((ckpt / CONFIG).read_text(encoding="utf-8")) or {}
    card = model_card(cfg, run_metrics(ckpt), name or out.resolve().name, license)
    (out / "README.md").write_text(card, encoding="utf-8")
    return out

"""Model presets: diffs over the dataclass defaults, applied before the experiment's YAML file."""

from __future__ import annotations

from typing import Any

# Model presets: diffs over the dataclass defaults, applied before the YAML file.
PRESETS: dict[str, dict[str, Any]] = {
    # Trains on 2 CPU cores in minutes on `shapes` at 64 px. Trained from scratch, the small ViT
    # and BERT need AdamW: with the paper's SGD (meant for pretrained encoders) weak training
    # stayed at the label prior for 600+ steps. Batch 16 learned faster per second than 32 or 8
    # (8 failed to leave the prior in 6000 steps).
    "tiny": {
        "train.optimizer": "adamw",
        "train.lr": 1e-3,
        "train.weight_decay": 0.05,
        "train.batch_size": 16,
        "train.warmup_steps": 50,
    },
    # Section 4.2: ViT-S/16 at 384 px, BERT-Small (4 layers, hidden 512, 8 heads), D = 1024,
    # both ImageNet / BERT pretrained, named on the Hugging Face Hub (read from its cache, see
    # docs/hub.md). From scratch: model.image.weights=none model.text.name=bert (the text sizes
    # below are then the from-scratch BERT's).
    "paper": {
        "model.image.weights": "hf-hub:timm/vit_small_patch16_384.augreg_in21k_ft_in1k",
        "model.text.name": "pretrained",
        "model.text.weights": "google/bert_uncased_L-4_H-512_A-8",
        "model.image.timm_model": "vit_small_patch16_384",
        "model.image.patch_size": 16,
        "model.image.embed_dim": 384,
        "model.image.depth": 12,
        "model.image.num_heads": 6,
        "model.image.drop_path": 0.1,
        "model.text.hidden_size": 512,
        "model.text.num_layers": 4,
        "model.text.num_heads": 8,
        "model.text.intermediate_size": 2048,
        "model.text.vocab_size": 30522,
        "model.embed_dim": 1024,
        "data.image_size": 384,
    },
    # Pretrained encoders that ship inside PyPI packages (no hub): EfficientNet-Lite0 (ImageNet)
    # with two transformer layers on its stride-16 features, and all-MiniLM-L6-v2.
    "offline": {
        "model.image.name": "efficientnet_lite0",
        "model.image.patch_size": 16,
        "model.image.embed_dim": 256,
        "model.image.depth": 2,
        "model.image.num_heads": 4,
        "model.image.drop_path": 0.1,
        "model.text.name": "minilm",
        "model.text.pool": "mean",
        "model.embed_dim": 256,
        "data.image_size": 224,
        # MiniLM stays frozen: fine-tuned on shapes' ~100 words it forgets the rest of its
        # vocabulary (paraphrase/seen mIoU 0.26 fine-tuned, 0.36 at lr x0.1, 0.42 frozen; README).
        "train.text_lr_scale": 0.0,
    },
}


def preset_names() -> tuple[str, ...]:
    """The names ``model.preset`` allows."""
    return tuple(PRESETS)

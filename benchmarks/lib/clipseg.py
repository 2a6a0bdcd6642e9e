"""CLIPSeg for the comparisons: its released architecture (and a micro one for the tests) with
random weights, a CLIP-style tokenizer trained on the phrases (no model hub), its preprocessor,
and two ways to run it: as documented (the image once per phrase) and "vision once" (the vision
tower once per image, the decoder per phrase)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# The released checkpoint's architecture (transformers' conversion script for CLIPSeg:
# CLIPSegTextConfig() defaults, CLIPSegVisionConfig(patch_size=16), reduce_dim 64 for "rd64",
# the complex transposed convolution for "refined"). CLIPSegConfig() alone has patch size 32.
CLIPSEG_RELEASED: dict[str, Any] = {
    "text": {},  # hidden 512, 12 layers, 8 heads, intermediate 2048, 77 positions
    "vision": {"patch_size": 16},  # hidden 768, 12 layers, 12 heads, intermediate 3072
    "extra": {
        "reduce_dim": 64,
        "extract_layers": [3, 6, 9],
        "use_complex_transposed_convolution": True,
        "projection_dim": 512,
    },
    "size": 352,  # preprocessor_config.json: resize to 352 x 352, ImageNet mean and std
}

# A CLIPSeg with every part of the released one (patch 16, refined transposed convolution, three
# extracted layers) at toy width: the tests' and gpu.sh --dry-run's.
MICRO_CLIPSEG: dict[str, Any] = {
    "text": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    },
    "vision": {
        "patch_size": 16,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "image_size": 64,
    },
    "extra": {
        "reduce_dim": 16,
        "extract_layers": [0, 1, 2],
        "use_complex_transposed_convolution": True,
        "projection_dim": 32,
        "decoder_intermediate_size": 32,
    },
    "size": 64,
}


def build_clipseg(spec: dict[str, Any]) -> Any:
    """A CLIPSegForImageSegmentation of ``spec`` (CLIPSEG_RELEASED, MICRO_CLIPSEG) with seeded
    random weights, in eval mode."""
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegTextConfig,
        CLIPSegVisionConfig,
    )

    cfg = CLIPSegConfig(
        text_config=CLIPSegTextConfig(**spec["text"]).to_dict(),
        vision_config=CLIPSegVisionConfig(**spec["vision"]).to_dict(),
        **spec["extra"],
    )
    torch.manual_seed(0)
    return CLIPSegForImageSegmentation(cfg).eval()


def clip_tokenizer(corpus: list[str]) -> Any:
    """transformers' CLIPTokenizer (CLIP's normaliser, pre-tokeniser, byte-level BPE with </w>)
    with a vocabulary trained on ``corpus``: CLIP's own vocab.json/merges.txt are not here."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=5000,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return CLIPTokenizer(vocab=model["vocab"], merges=merges)


def clipseg_processor(tokenizer: Any, size: int) -> Any:
    """The released preprocessor: resize to size x size (bilinear), ImageNet mean and std."""
    from transformers import CLIPSegProcessor, ViTImageProcessor

    image_processor = ViTImageProcessor(
        do_resize=True,
        size={"height": size, "width": size},
        resample=2,  # PIL bilinear, as in the released preprocessor_config.json
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    return CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer)


def logits_to_masks(logits: Tensor, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """[L, s, s] logits -> probabilities float32 [L, H, W] and masks at image resolution, on the
    host: upsampled where the logits are (a GPU's for gpu.py), then copied back, as TSEG's
    Segmenter copies its maps (a no-op on the CPU)."""
    probs = F.interpolate(
        torch.sigmoid(logits.float())[:, None], size=hw, mode="bilinear", align_corners=False
    )[:, 0]
    probs = probs.cpu().numpy()
    return probs, probs > 0.5


class ClipsegDocumented:
    """CLIPSeg as its documentation runs it: the image repeated once per phrase."""

    def __init__(self, model, processor) -> None:
        self.model, self.processor = model, processor

    def __call__(self, images: list[np.ndarray], texts: list[str]) -> list[np.ndarray]:
        # A batch of images: every (image, phrase) pair is one row of the batch.
        inputs = self.processor(
            text=texts * len(images),
            images=[im for im in images for _ in texts],
            padding=True,
            return_tensors="pt",
        )
        with torch.inference_mode():
            logits = self.model(**inputs).logits.view(-1, *inputs["pixel_values"].shape[-2:])
        L = len(texts)
        return [
            logits_to_masks(logits[i * L : (i + 1) * L], im.shape[:2])[1]
            for i, im in enumerate(images)
        ]


class ClipsegVisionOnce:
    """CLIPSeg's vision tower once per image, up to its last extracted layer, then the decoder
    per phrase on the precomputed activations and the phrases' conditional embeddings."""

    def __init__(self, model, processor) -> None:
        self.model, self.processor = model, processor

    @torch.inference_mode()
    def activations(self, pixel_values: Tensor) -> list[Tensor]:
        """[B, 3, s, s] -> the hidden states after each layer in extract_layers, [B, 1 + N, C] each
        (the same tensors as ``hidden_states[i + 1]`` of the full vision forward)."""
        vision = self.model.clip.vision_model
        layers = list(self.model.extract_layers)
        h = vision.pre_layrnorm(vision.embeddings(pixel_values, interpolate_pos_encoding=True))
        out = []
        for i, layer in enumerate(vision.encoder.layers[: max(layers) + 1]):
            h = layer(h, None)
            if i in layers:
                out.append(h)
        return out

    @torch.inference_mode()
    def logits(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[B, 3, s, s] images and L phrases -> [B * L, s, s] logits (image-major)."""
        b, L = pixel_values.shape[0], input_ids.shape[0]
        acts = [a.repeat_interleave(L, dim=0) for a in self.activations(pixel_values)]
        cond = self.model.clip.get_text_features(input_ids, attention_mask=attention_mask)
        cond = cond.pooler_output.repeat(b, 1)  # [B * L, projection_dim]
        out = self.model.decoder(tuple(acts), cond).logits
        return out.view(b * L, *pixel_values.shape[-2:])

    def __call__(self, images: list[np.ndarray], texts: list[str]) -> list[np.ndarray]:
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        logits = self.logits(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])
        L = len(texts)
        return [
            logits_to_masks(logits[i * L : (i + 1) * L], im.shape[:2])[1]
            for i, im in enumerate(images)
        ]


# ---------------------------------------------------------------------------------------------

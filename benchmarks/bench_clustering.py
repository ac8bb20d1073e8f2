"""Clustering benchmark: our ``extract_clusters`` against the authors' procedure (re-implemented).

    python benchmarks/bench_clustering.py --synthetic
    python benchmarks/bench_clustering.py results/n_sweep/embeddings/SET/FT/METHOD.npy \
        --private results/embeddings/private/SET.npy --multiples 50 200 500

Descriptor files hold one L2-normalised SSCD descriptor per row, with the workflow's ``.order.csv``
beside them; for each of ``--multiples`` the first m x N0 seeds are clustered (the N sweep's
prefixes of one ``snakemake n_sweep`` run). ``--synthetic`` builds N0 = 10 private images and
N = 50, 200, 500 x N0 generated ones (see ``synthetic_descriptors``).

Timing: wall-clock seconds, plus our process's CPU seconds, because the machine this runs on is
often shared (a niced benchmark next to training jobs gets a fraction of a core, so wall time
overstates our cost; CPU time does not). The baseline's 30 s per-threshold cap is wall-clock by
design, so its time is reported as wall time; a run stopped by ``--baseline-budget`` shows "> X".

AS columns: ours scores exactly N0 images. The authors keep every clique at their threshold (often
many more than N0), so their AS is shown both for all kept images and for their N0 largest
cliques (the like-for-like comparison); "upper" is the best of all generated images.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from authors_clustering import authors_clustering

from finextract.attack.clustering import extract_clusters
from finextract.attack.metrics import score_extraction
from finextract.experiments.nsweep import prefix_rows


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def synthetic_descriptors(n0: int, n: int, dim: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(private, generated) unit descriptors shaped like SSCD on one fine-tuned model's samples.

    Private images share a style direction (pairwise similarity ~0.35, as distinct images of one
    set score in the probe notes). Half of the samples are noisy copies of a private image, with a
    skewed popularity (some images memorised often, some never), similarity to their original
    0.6-0.96; a fifth are copies of "decoy" modes (things the model makes that are not private);
    the rest is background in the same style.
    """
    rng = np.random.default_rng(seed)
    style = _unit(rng.standard_normal(dim))

    def in_style(k: int) -> np.ndarray:
        return _unit(0.6 * style + 0.8 * _unit(rng.standard_normal((k, dim))))

    private, decoys = in_style(n0), in_style(max(1, n0 // 2))
    n_copies, n_decoy = n // 2, n // 5
    which = rng.choice(n0, size=n_copies, p=rng.dirichlet(np.full(n0, 0.7)))
    copies = _unit(private[which] + rng.uniform(0.3, 1.3, (n_copies, 1)) * _unit(rng.standard_normal((n_copies, dim))))
    decoy_which = rng.integers(0, len(decoys), n_decoy)
    decoy_copies = _unit(decoys[decoy_which] + rng.uniform(0.5, 1.3, (n_decoy, 1))
                         * _unit(rng.standard_normal((n_decoy, dim))))
    generated = np.concatenate([copies, decoy_copies, in_style(n - n_copies - n_decoy)])
    return private.astype(np.float32), generated[rng.permutation(n)].astype(np.float32)


def _timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bench_one(name: str, generated: np.ndarray, private: np.ndarray | None, n0: int, baseline_budget: float,
              baseline_max_n: int, seed: int, min_threshold: float | None = 0.6) -> dict:
    similarity = generated @ generated.T
    n = len(generated)
    ours, wall, cpu = _timed(extract_clusters, similarity, n0, min_threshold=min_threshold)
    row: dict = {"data": name, "N": n, "N0": n0, "ours_s": wall, "ours_cpu_s": cpu,
                 "ours_phi": ours.threshold, "ours_K": ours.n_cliques_at_threshold,
                 "ours_thresholds": len(ours.trials), "ours_exact": ours.exact}
    if private is not None:
        scores = score_extraction(private, generated[ours.centers], generated=generated)
        row.update({"ours_AS": scores["AS"], "ours_A-ESR@0.6": scores["A-ESR@0.6"], "upper_AS": scores["upper_AS"]})
        if min_threshold is not None:  # the same search without the floor: the paper's rule as written
            paper = extract_clusters(similarity, n0)
            row["ours_no_floor_AS"] = score_extraction(private, generated[paper.centers])["AS"]
    if n > baseline_max_n:
        row["authors_s"] = f"not run (N > {baseline_max_n})"
        return row
    theirs = authors_clustering(similarity, n0, seed=seed, total_timeout_s=baseline_budget)
    timeouts = int(theirs.trials["timed_out"].sum())
    more = "" if theirs.finished else "> "
    row.update({"authors_s": f"{more}{theirs.seconds:.1f}", "authors_cpu_s": f"{more}{theirs.cpu_seconds:.1f}",
                "authors_timeouts": timeouts, "authors_thresholds": len(theirs.trials),
                "speedup_wall": f"{more}{theirs.seconds / wall:.0f}x",
                "speedup_cpu": f"{more}{theirs.cpu_seconds / cpu:.0f}x"})
    if theirs.finished:
        row.update({"authors_phi": theirs.threshold, "authors_kept": len(theirs.centers)})
        if private is not None:
            largest = np.argsort([-len(c) for c in theirs.cliques], kind="stable")[:n0]
            row["authors_AS_all"] = score_extraction(private, generated[theirs.centers])["AS"]
            row["authors_AS_N0"] = score_extraction(private, generated[theirs.centers[largest]])["AS"]
    return row


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("descriptors", nargs="*", help="generated-image descriptor matrices (.npy)")
    parser.add_argument("--private", help="private-image descriptors (.npy), to report AS")
    parser.add_argument("--synthetic", action="store_true", help="benchmark synthetic descriptors")
    parser.add_argument("--n0", type=int, default=10)
    parser.add_argument("--multiples", type=int, nargs="+", default=[50, 200, 500],
                        help="N as multiples of N0 (synthetic data, or prefixes of a run's matrix)")
    parser.add_argument("--baseline-budget", type=float, default=150.0,
                        help="total seconds the authors' procedure may run per data set")
    parser.add_argument("--baseline-max-n", type=int, default=2000,
                        help="skip the baseline above this N (its networkx graphs need GBs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-threshold", type=float, default=0.6,
                        help="our floor under phi (the workflow default); a negative value means none")
    parser.add_argument("--csv", help="also write the table here")
    args = parser.parse_args(argv)
    if not args.synthetic and not args.descriptors:
        parser.error("give descriptor files or --synthetic")

    private = np.load(args.private) if args.private else None
    floor = None if args.min_threshold < 0 else args.min_threshold
    rows = []
    if args.synthetic:
        for multiple in args.multiples:
            synthetic_private, generated = synthetic_descriptors(args.n0, multiple * args.n0, seed=args.seed)
            budget = args.baseline_budget if multiple * args.n0 <= 500 else min(args.baseline_budget, 60.0)
            rows.append(bench_one(f"synthetic {multiple}xN0", generated, synthetic_private, args.n0, budget,
                                  args.baseline_max_n, args.seed, floor))
            print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    for path in args.descriptors:
        # A workflow run's matrix: score its first m x N0 seeds for each multiple (N sweep prefixes)
        generated = np.load(path)
        files = pd.read_csv(Path(path).with_suffix(".order.csv"))["file"].tolist()
        n0 = len(private) if private is not None else args.n0
        for multiple in args.multiples:
            if multiple * n0 > len(generated):
                print(f"{path}: skipping {multiple}xN0 (only {len(generated)} images)", flush=True)
                continue
            prefix = generated[prefix_rows(files, multiple * n0)]
            rows.append(bench_one(f"{Path(path).parent.parent.name}/{Path(path).parent.name}/{Path(path).stem} "
                                  f"{multiple}xN0", prefix, private, n0, args.baseline_budget,
                                  args.baseline_max_n, args.seed, floor))
            print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)

    table = pd.DataFrame(rows)
    for column in ("ours_K", "ours_thresholds", "authors_timeouts", "authors_thresholds", "authors_kept"):
        if column in table:
            table[column] = table[column].astype("Int64")
    with pd.option_context("display.width", 250, "display.max_columns", 50, "display.float_format", "{:.3f}".format):
        print("\n" + table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return table


if __name__ == "__main__":
    main()

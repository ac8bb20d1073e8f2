"""How much of the N sweep's AS is lost to the choice of phi (diagnostic, uses the private set).

    .venv/bin/python benchmarks/threshold_choice.py [--results results] [--multiples 20 50 200 500]

For each matrix of a `snakemake n_sweep` run and each N, compares the AS of the paper's rule
(``extract_clusters``: phi raised until exactly N0 cliques) with the AS of the N0 largest cliques at
every phi of a grid (greedy cliques, ``clusters_at_threshold(exact=False)``). The best grid phi is an
*oracle*: it is picked with the private images, which an attacker does not have, so it bounds
what any unsupervised threshold rule could gain over the paper's; "best phi" says where it sits.
Also shows the largest clique at the paper's phi: when N grows past ~50 N0 the rule needs a
near-complete graph to absorb every singleton, and one clique swallows most images.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from finextract.attack.clustering import clusters_at_threshold, extract_clusters
from finextract.attack.metrics import score_extraction
from finextract.experiments.nsweep import prefix_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--multiples", type=int, nargs="+", default=[20, 50, 200, 500])
    parser.add_argument("--grid", type=float, nargs=3, default=[0.30, 0.98, 0.02], metavar=("FROM", "TO", "STEP"))
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    root = Path(args.results)
    matrices = sorted((root / "n_sweep" / "embeddings").glob("*/*/*.npy"))
    if not matrices:
        sys.exit(f"no N-sweep matrices under {root}/n_sweep/embeddings: run `snakemake n_sweep` first")
    grid = np.arange(args.grid[0], args.grid[1] + 1e-9, args.grid[2])
    rows = []
    for path in matrices:
        set_name, ft, method = path.parent.parent.name, path.parent.name, path.stem
        private = np.load(root / "embeddings" / "private" / f"{set_name}.npy")
        n0 = len(private)
        generated = np.load(path)
        files = pd.read_csv(path.with_suffix(".order.csv"))["file"].tolist()
        for multiple in args.multiples:
            if multiple * n0 > len(generated):
                continue
            x = generated[prefix_rows(files, multiple * n0)]
            sim = x @ x.T
            paper = extract_clusters(sim, n0)
            per_phi = [(score_extraction(private, x[clusters_at_threshold(sim, n0, phi, exact=False).centers])["AS"],
                        phi) for phi in grid]
            best_as, best_phi = max(per_phi)
            scores = score_extraction(private, x[paper.centers], generated=x)
            rows.append({"set": set_name, "ft": ft, "method": method, "N/N0": multiple,
                         "paper_rule_AS": scores["AS"], "paper_phi": paper.threshold,
                         "largest_clique_share": max(len(m) for m in paper.members) / len(x),
                         "oracle_phi_AS": best_as, "oracle_phi": best_phi, "upper_AS": scores["upper_AS"]})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1,
                                                    float_format=lambda v: f"{v:.3f}"), flush=True)
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()

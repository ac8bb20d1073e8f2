# `snakemake n0_ablation --configfile config/n0-ablation.yaml`: extraction against N0 (the paper's Fig. 4a).
# The ablation's sets are ordinary private sets of the run (n0_ablation.sets), fine-tuned, sampled and
# scored by the usual rules with the usual recipe; this rule only lines their metrics up by N0.


rule n0_ablation:
    input:
        [f"{RESULTS}/metrics/{c.set}/{c.ft}/{c.method}.csv" for c in SCORED if c.set in N0_SETS],
    output:
        csv=f"{RESULTS}/n0_ablation/n0_ablation.csv",
        png=report(
            f"{RESULTS}/n0_ablation/n0_ablation.png",
            caption="../report/n0_ablation.rst",
            category="N0 ablation",
            labels={"figure": "AS and A-ESR vs N0"},
        ),
    log:
        f"{RESULTS}/logs/n0_ablation/n0_ablation.log",
    localrule: True
    params:
        n0=" ".join(f"{shlex.quote(name)}={N0[name]}" for name in N0_SETS),
        taus=TAUS,
    shell:
        "$FINEXTRACT n0-summary --metrics {input:q} --n0 {params.n0} --taus {params.taus} "
        "--out-csv {output.csv:q} --out-png {output.png:q} 2>&1 | tee {log:q}"

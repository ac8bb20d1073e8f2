# `snakemake n_sweep`: AS and A-ESR against the number of generated images N (paper Fig. 4b,
# extended to 500 N0). One sampling run at the largest N; every smaller N is a prefix of its seeds,
# so its shards are the same jobs (and files) as the default run's and are shared with it.

# (SWEEP, SWEEP_MULTIPLES, SWEEP_COMBOS and sweep_shard_dirs are in common.smk.)


rule embed_sweep:
    input:
        sweep_shard_dirs,
    output:
        embeddings=f"{RESULTS}/n_sweep/embeddings/{{set}}/{{ft}}/{{method}}.npy",
        order=f"{RESULTS}/n_sweep/embeddings/{{set}}/{{ft}}/{{method}}.order.csv",
    log:
        f"{RESULTS}/logs/n_sweep/embeddings/{{set}}/{{ft}}/{{method}}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        sscd=sscd_args(),
    shell:
        embed_command() + " 2>&1 | tee {log:q}"


rule sweep_point:
    input:
        generated=rules.embed_sweep.output.embeddings,
        order=rules.embed_sweep.output.order,
        private=f"{RESULTS}/embeddings/private/{{set}}.npy",
    output:
        f"{RESULTS}/n_sweep/points/{{set}}/{{ft}}/{{method}}/n{{multiple}}.csv",
    log:
        f"{RESULTS}/logs/n_sweep/points/{{set}}/{{ft}}/{{method}}/n{{multiple}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        n_images=lambda wc: int(wc.multiple) * N0[wc.set],
        seed_offset=lambda wc: target(wc).sampling["seed_offset"],
        time_cap=config["clustering"]["time_cap_s"],
        min_threshold=min_threshold_arg(),
        taus=TAUS,
        folder=set_folder,
        base=lambda wc: shlex.quote(target(wc).base),
        l2_delta=config["metrics"]["l2_delta"],
    shell:
        "$FINEXTRACT sweep-point --generated {input.generated:q} --order {input.order:q} --private {input.private:q} "
        "--n-images {params.n_images} --seed-offset {params.seed_offset} --time-cap {params.time_cap} "
        "--min-threshold {params.min_threshold} "
        "--taus {params.taus} --set {wildcards.set} --ft {wildcards.ft} --method {wildcards.method} "
        "--private-set {params.folder:q} --base {params.base} --l2-delta {params.l2_delta} "
        "--out {output:q} 2>&1 | tee {log:q}"


rule n_sweep:
    input:
        [f"{RESULTS}/n_sweep/points/{c.set}/{c.ft}/{c.method}/n{m}.csv" for c in SWEEP_COMBOS for m in SWEEP_MULTIPLES],
    output:
        csv=f"{RESULTS}/n_sweep/n_sweep.csv",
        png=report(
            f"{RESULTS}/n_sweep/n_sweep.png",
            caption="../report/n_sweep.rst",
            category="N sweep",
            labels={"figure": "AS and A-ESR vs N"},
        ),
    log:
        f"{RESULTS}/logs/n_sweep/n_sweep.log",
    localrule: True
    params:
        taus=TAUS,
    shell:
        "$FINEXTRACT sweep-summary --points {input:q} --taus {params.taus} --out-csv {output.csv:q} "
        "--out-png {output.png:q} 2>&1 | tee {log:q}"

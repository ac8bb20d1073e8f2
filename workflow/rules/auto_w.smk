# `w: auto` (docs/guidance-study.md): for a method whose w' is `auto`, sample every candidate w' of
# sampling.auto_w_candidates, score how much each candidate's samples look like N0 extracted copies
# (finextract.experiments.auto_w, no private image involved), and sample the method at the winner. Works the same
# in real-world mode: it needs only theta, theta', the caption and the generated images.


rule auto_w_sample:
    input:
        finetuned=finetune_output,
        caption=extracted_caption,
    output:
        directory(f"{RESULTS}/auto_w/{{set}}/{{ft}}/{{method}}/w{{w}}/shard_{{shard}}"),
    log:
        f"{RESULTS}/logs/auto_w/{{set}}/{{ft}}/{{method}}/w{{w}}/{{shard}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    params:
        k=lambda wc: guidance(wc)[1],
        steps=lambda wc: target(wc).sampling["steps"],
        scheduler=lambda wc: target(wc).sampling["scheduler"],
        interval=lambda wc: " ".join(str(t) for t in target(wc).sampling["guidance_interval"]),
        batch_size=lambda wc: target(wc).sampling["batch_size"],
        caption=caption_args,
        load=sampling_load_args,
        theta=weights_digest,
        finetuned=finetuned_arg,
    shell:
        sample_command(w="{wildcards.w}") + " > {log:q} 2>&1"


rule auto_w_score:
    input:
        auto_w_shards,
    output:
        score=f"{RESULTS}/auto_w/{{set}}/{{ft}}/{{method}}/w{{w}}.csv",
        embeddings=f"{RESULTS}/auto_w/{{set}}/{{ft}}/{{method}}/w{{w}}.npy",
        order=f"{RESULTS}/auto_w/{{set}}/{{ft}}/{{method}}/w{{w}}.order.csv",
    log:
        f"{RESULTS}/logs/auto_w/{{set}}/{{ft}}/{{method}}/w{{w}}.log",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        sscd=sscd_args(),
        n0=lambda wc: N0[wc.set],
        time_cap=config["clustering"]["time_cap_s"],
        min_threshold=min_threshold_arg(),
    shell:
        subshell(
            embed_command(),
            "$FINEXTRACT separation --embeddings {output.embeddings:q} --n0 {params.n0} "
            "--w {wildcards.w} --time-cap {params.time_cap} --min-threshold {params.min_threshold} "
            "--out {output.score:q}",
        )
        + " > {log:q} 2>&1"


rule auto_w_choice:
    input:
        auto_w_scores,
    output:
        f"{RESULTS}/auto_w/{{set}}/{{ft}}/{{method}}/choice.json",
    log:
        f"{RESULTS}/logs/auto_w/{{set}}/{{ft}}/{{method}}/choice.log",
    localrule: True
    shell:
        "$FINEXTRACT choose-w --scores {input:q} --out {output:q} 2>&1 | tee {log:q}"

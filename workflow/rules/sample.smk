# Guided sampling, split into shards of seeds that run as separate (GPU) jobs.
# w' and k are params of this rule only: changing them reruns sampling and what follows.


rule sample_shard:
    input:
        finetuned=finetune_output,
    output:
        directory(f"{RESULTS}/samples/{{set}}/{{ft}}/{{method}}/shard_{{shard}}"),
    params:
        guidance=guidance,
        steps=lambda wc: target(wc).sampling["steps"],
        scheduler=lambda wc: target(wc).sampling["scheduler"],
        interval=lambda wc: " ".join(str(t) for t in target(wc).sampling["guidance_interval"]),
        batch_size=lambda wc: target(wc).sampling["batch_size"],
        caption=caption_args,
        load=load_args,
        finetuned=finetuned_arg,
    log:
        f"{RESULTS}/logs/samples/{{set}}/{{ft}}/{{method}}/{{shard}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    shell:
        "$FINEXTRACT sample {params.load} {params.finetuned} --ft-method {wildcards.ft} {params.caption} "
        "--method {wildcards.method} --w {params.guidance[0]} --k {params.guidance[1]} "
        "--steps {params.steps} --scheduler {params.scheduler} --guidance-interval {params.interval} --seeds {wildcards.shard} --batch-size {params.batch_size} "
        "--threads {threads} --out {output} 2>&1 | tee {log}"

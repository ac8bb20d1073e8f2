# Guided sampling, split into shards of seeds that run as separate (GPU) jobs.
# w' and k are params of this rule only: changing them reruns sampling and what follows.


rule sample_shard:
    input:
        finetuned=finetune_output,
    output:
        directory(f"{RESULTS}/samples/{{set}}/{{ft}}/{{method}}/shard_{{shard}}"),
    params:
        guidance=lambda wc: fxconfig.guidance_params(config, wc.method, wc.ft),
        steps=SAMPLING["steps"],
        batch_size=SAMPLING["batch_size"],
        folder=set_folder,
        caption=set_caption_arg,
        base=config["base_model"],
        ft_arg=lambda wc, input: f"--ft-dir {input.finetuned}" if input.finetuned else "",
    log:
        f"{RESULTS}/logs/samples/{{set}}/{{ft}}/{{method}}/{{shard}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    shell:
        "{FX} sample --base {params.base} {params.ft_arg} --ft-method {wildcards.ft} "
        "--set-folder {params.folder} {params.caption} --method {wildcards.method} "
        "--w {params.guidance[0]} --k {params.guidance[1]} --steps {params.steps} "
        "--seeds {wildcards.shard} --batch-size {params.batch_size} --threads {threads} "
        "--out {output} 2>&1 | tee {log}"

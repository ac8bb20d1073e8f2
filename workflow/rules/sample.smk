# Guided sampling, split into shards of seeds that run as separate (GPU) jobs.
# w' and k are params of this rule only: changing them reruns sampling and what follows. With
# `w: auto` the w' comes from the choice file of rules/auto_w.smk.


rule sample_shard:
    input:
        finetuned=finetune_output,
        choice=auto_w_choice_file,
        caption=extracted_caption,
    output:
        directory(f"{RESULTS}/samples/{{set}}/{{ft}}/{{method}}/shard_{{shard}}"),
    log:
        f"{RESULTS}/logs/samples/{{set}}/{{ft}}/{{method}}/{{shard}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    params:
        w=sample_w,
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
        sample_command() + " 2>&1 | tee {log:q}"

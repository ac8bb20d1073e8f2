# `snakemake captions`: the training caption from θ and θ' weights alone (docs/paper-experiments.md).
# One job per private set and fine-tuning method; the default run's fine-tuned models are reused. In
# real-world mode a target with `caption: extract` samples with the caption.txt this rule writes.


rule extract_caption:
    input:
        finetuned=finetune_output,
    output:
        directory(f"{RESULTS}/captions/{{set}}/{{ft,dreambooth|lora}}"),
    log:
        f"{RESULTS}/logs/captions/{{set}}/{{ft}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    params:
        finetuned=finetuned_arg,
        c=config["caption_extraction"],
        lengths=" ".join(str(n) for n in config["caption_extraction"]["lengths"]),
        scan="--scan-tokens" if config["caption_extraction"]["scan_tokens"] else "",
        caption=true_caption_args,
        load=load_args,
        theta=weights_digest,
    shell:
        "$FINEXTRACT extract-caption {params.load} {params.finetuned} --ft-method {wildcards.ft} "
        "{params.caption} --lengths {params.lengths} --iterations {params.c[iterations]} --step {params.c[step]} "
        "--seed {params.c[seed]} --rank {params.c[rank]} --objective {params.c[objective]} {params.scan} --threads {threads} --out {output:q} "
        "2>&1 | tee {log:q}"


rule captions:
    input:
        [
            f"{RESULTS}/captions/{s}/{ft}"
            for s in TARGETS
            if TARGETS[s].images or TARGETS[s].extracts_caption
            for ft in TARGETS[s].ft_methods
        ],
    output:
        csv=report(
            f"{RESULTS}/captions/summary.csv",
            caption="../report/captions.rst",
            category="Paper experiments",
            labels={"figure": "caption extraction (table)"},
        ),
        png=report(
            f"{RESULTS}/captions/summary.png",
            caption="../report/captions.rst",
            category="Paper experiments",
            labels={"figure": "caption extraction"},
        ),
    log:
        f"{RESULTS}/logs/captions/summary.log",
    localrule: True
    shell:
        "$FINEXTRACT captions-summary --folders {input:q} --out {output.csv:q} --out-png {output.png:q} 2>&1 | tee {log:q}"

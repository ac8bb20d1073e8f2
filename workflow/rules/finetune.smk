# Fine-tuning: theta -> theta' on one private set (DreamBooth: full UNet; LoRA: adapters).
# Its params are the fine-tuning hyperparameters only, so changing w' or k never reruns it.
import json


rule finetune:
    input:
        images=private_images,
    output:
        directory(f"{RESULTS}/finetune/{{set}}/{{ft,dreambooth|lora}}"),
    log:
        f"{RESULTS}/logs/finetune/{{set}}/{{ft}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        hyper=lambda wc: json.dumps(finetune_params(wc.ft), sort_keys=True),
        caption=caption_args,
        folder=set_folder,
        images=images_digest,
        load=load_args,
        theta=weights_digest,
    shell:
        "$FINEXTRACT finetune {params.load} {params.caption} --set-folder {params.folder:q} "
        "--method {wildcards.ft} --hyper {params.hyper:q} --threads {threads} --out {output:q} "
        "2>&1 | tee {log:q}"

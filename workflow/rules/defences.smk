# `snakemake defences`: the paper's Table 3 (docs/paper-experiments.md). Each augmentation fine-tunes its
# own models (finetune.<method> otherwise unchanged), each attack samples them once (all N seeds in one
# job) and is scored as the workflow scores; the direct samples also give the quality cost.
# Its files live under results/defences/; the default run's files are never touched.


rule defence_finetune:
    input:
        images=private_images,
    output:
        directory(f"{DEFENCE_ROOT}/{{augment}}/finetune/{{set}}/{{ft,dreambooth|lora}}"),
    log:
        f"{RESULTS}/logs/defences/{{augment}}/finetune/{{set}}/{{ft}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        hyper=defence_hyper,
        caption=caption_args,
        folder=set_folder,
        images=images_digest,
        load=load_args,
        theta=weights_digest,
    shell:
        "$FINEXTRACT finetune {params.load} {params.caption} --set-folder {params.folder:q} --method {wildcards.ft} --hyper {params.hyper:q} "
        "--threads {threads} --out {output:q} 2>&1 | tee {log:q}"


rule defence_sample:
    input:
        finetuned=f"{DEFENCE_ROOT}/{{augment}}/finetune/{{set}}/{{ft}}",
    output:
        directory(f"{DEFENCE_ROOT}/{{augment}}/samples/{{set}}/{{ft,dreambooth|lora}}/{{method}}"),
    log:
        f"{RESULTS}/logs/defences/{{augment}}/samples/{{set}}/{{ft}}/{{method}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    params:
        w=lambda wc: defence_guidance(wc)[0],
        k=lambda wc: defence_guidance(wc)[1],
        seeds=lambda wc: fxconfig.seed_shards(target_n(wc.set), target_n(wc.set), target(wc).sampling["seed_offset"])[0],
        steps=config["sampling"]["steps"],
        scheduler=config["sampling"]["scheduler"],
        interval=" ".join(str(t) for t in config["sampling"]["guidance_interval"]),
        batch_size=config["sampling"]["batch_size"],
        caption=caption_args,
        load=load_args,
        theta=weights_digest,
    shell:
        sample_command(finetuned="--ft-dir {input.finetuned:q} ", seeds="{params.seeds}") + " > {log:q} 2>&1"


rule defence_point:
    input:
        samples=f"{DEFENCE_ROOT}/{{augment}}/samples/{{set}}/{{ft}}/{{method}}",
        private=f"{RESULTS}/embeddings/private/{{set}}.npy",
    output:
        point=f"{DEFENCE_ROOT}/{{augment}}/points/{{set}}/{{ft}}/{{method}}.csv",
        embeddings=f"{DEFENCE_ROOT}/{{augment}}/embeddings/{{set}}/{{ft}}/{{method}}.npy",
        order=f"{DEFENCE_ROOT}/{{augment}}/embeddings/{{set}}/{{ft}}/{{method}}.order.csv",
    log:
        f"{RESULTS}/logs/defences/{{augment}}/points/{{set}}/{{ft}}/{{method}}.log",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        sscd=sscd_args(),
        seed=lambda wc: config["finetune"][wc.ft]["seed"],
        spi=lambda wc: config["finetune"][wc.ft]["steps_per_image"],
        time_cap=config["clustering"]["time_cap_s"],
        min_threshold=min_threshold_arg(),
        taus=TAUS,
        folder=set_folder,
        base=lambda wc: shlex.quote(target(wc).base),
        l2_delta=config["metrics"]["l2_delta"],
    shell:
        subshell(
            embed_command("--images {input.samples:q}"),
            "$FINEXTRACT study-point --generated {output.embeddings:q} --order {output.order:q} --private {input.private:q} "
            "--set {wildcards.set} --ft {wildcards.ft} --seed {params.seed} --steps-per-image {params.spi} "
            "--variant {wildcards.method} --time-cap {params.time_cap} --min-threshold {params.min_threshold} "
            "--taus {params.taus} --private-set {params.folder:q} --base {params.base} --l2-delta {params.l2_delta} "
            "--out {output.point:q}",
        )
        + " > {log:q} 2>&1"


rule defence_quality:
    input:
        samples=f"{DEFENCE_ROOT}/{{augment}}/samples/{{set}}/{{ft}}/direct",
        generated=f"{DEFENCE_ROOT}/{{augment}}/embeddings/{{set}}/{{ft}}/direct.npy",
        private=f"{RESULTS}/embeddings/private/{{set}}.npy",
    output:
        f"{DEFENCE_ROOT}/{{augment}}/quality/{{set}}/{{ft}}.csv",
    log:
        f"{RESULTS}/logs/defences/{{augment}}/quality/{{set}}/{{ft}}.log",
    localrule: True
    shell:
        "$FINEXTRACT defence-quality --samples {input.samples:q} --generated {input.generated:q} "
        "--private {input.private:q} --augment {wildcards.augment} --set {wildcards.set} --ft {wildcards.ft} "
        "--out {output:q} 2>&1 | tee {log:q}"


rule defences:
    input:
        points=[
            f"{DEFENCE_ROOT}/{a}/points/{s}/{ft}/{m}.csv"
            for a in DEFENCES["augments"]
            for s in DEFENCE_SETS
            for ft in DEFENCES["ft"]
            for m in DEFENCE_METHODS
        ],
        qualities=[
            f"{DEFENCE_ROOT}/{a}/quality/{s}/{ft}.csv"
            for a in DEFENCES["augments"]
            for s in DEFENCE_SETS
            for ft in DEFENCES["ft"]
        ],
    output:
        table=report(
            f"{DEFENCE_ROOT}/summary/defences.csv",
            caption="../report/defences.rst",
            category="Paper experiments",
            labels={"figure": "defences (table)"},
        ),
        figure=report(
            f"{DEFENCE_ROOT}/summary/defences.png",
            caption="../report/defences.rst",
            category="Paper experiments",
            labels={"figure": "defences"},
        ),
        md=f"{DEFENCE_ROOT}/summary/defences.md",
    log:
        f"{RESULTS}/logs/defences/summary.log",
    localrule: True
    params:
        out=lambda wc, output: os.path.dirname(output.table),
    shell:
        "$FINEXTRACT defences-summary --points {input.points:q} --qualities {input.qualities:q} --out-dir {params.out:q} "
        "2>&1 | tee {log:q}"

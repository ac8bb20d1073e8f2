# `snakemake study`: the guidance study (docs/guidance-study.md). Fine-tuning strength is a ladder of
# snapshots of one constant-lr run per (set, method, seed); every variant (method, w', k, interval)
# of every rung is one sampling job and one scoring job, so changing one w' reruns only its own jobs.
# Its files live under results/study/; the default run's files are never touched.
# `snakemake default_recipe` runs only what the default-recipe rule reads (direct sampling at every rung for the
# rule's seeds, and the controls) and applies it.


rule study_finetune:
    input:
        images=private_images,
    output:
        directory(f"{STUDY_ROOT}/finetune/{{set}}/{{ft,dreambooth|lora}}/seed{{seed}}"),
    log:
        f"{RESULTS}/logs/study/finetune/{{set}}/{{ft}}/seed{{seed}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        hyper=lambda wc: study_hyper(wc.ft, wc.seed),
        snapshots=" ".join(str(s) for s in sorted(STUDY["steps_per_image"])),
        caption=caption_args,
        folder=set_folder,
        images=images_digest,
        load=load_args,
        theta=weights_digest,
    shell:
        "$FINEXTRACT finetune {params.load} {params.caption} --set-folder {params.folder:q} --method {wildcards.ft} --hyper {params.hyper:q} "
        "--snapshots {params.snapshots} --threads {threads} --out {output:q} 2>&1 | tee {log:q}"


rule study_sample:
    input:
        finetuned=f"{STUDY_ROOT}/finetune/{{set}}/{{ft}}/seed{{seed}}",
    output:
        directory(f"{STUDY_ROOT}/samples/{{set}}/{{ft,dreambooth|lora}}/seed{{seed}}/spi{{spi}}/{{variant}}"),
    log:
        f"{RESULTS}/logs/study/samples/{{set}}/{{ft}}/seed{{seed}}/spi{{spi}}/{{variant}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    params:
        variant=study_variant,
        seeds=study_seeds,
        snapshot=lambda wc: snapshot_name(int(wc.spi)),
        steps=config["sampling"]["steps"],
        scheduler=config["sampling"]["scheduler"],
        batch_size=config["sampling"]["batch_size"],
        caption=caption_args,
        load=load_args,
        theta=weights_digest,
    shell:
        sample_command(
            finetuned="--ft-dir {input.finetuned:q}/{params.snapshot} ",
            method="{params.variant.method}",
            w="{params.variant.w}",
            k="{params.variant.k}",
            interval="{params.variant.interval[0]} {params.variant.interval[1]}",
            seeds="{params.seeds}",
        )
        + " > {log:q} 2>&1"


rule study_control_sample:
    output:
        directory(f"{STUDY_ROOT}/samples/{{set}}/none/control"),
    log:
        f"{RESULTS}/logs/study/samples/{{set}}/none/control.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    params:
        seeds=study_seeds,
        steps=config["sampling"]["steps"],
        scheduler=config["sampling"]["scheduler"],
        batch_size=config["sampling"]["batch_size"],
        caption=caption_args,
        load=load_args,
        theta=weights_digest,
    shell:
        sample_command(
            finetuned="", ft="none", method="direct", w="1", k="0", interval="0 1000", seeds="{params.seeds}"
        )
        + " > {log:q} 2>&1"


rule study_point:
    input:
        samples=f"{STUDY_ROOT}/samples/{{set}}/{{ft}}/{{path}}",
        private=f"{RESULTS}/embeddings/private/{{set}}.npy",
    output:
        point=f"{STUDY_ROOT}/points/{{set}}/{{ft}}/{{path}}.csv",
        embeddings=f"{STUDY_ROOT}/embeddings/{{set}}/{{ft}}/{{path}}.npy",
        order=f"{STUDY_ROOT}/embeddings/{{set}}/{{ft}}/{{path}}.order.csv",
    log:
        f"{RESULTS}/logs/study/points/{{set}}/{{ft}}/{{path}}.log",
    wildcard_constraints:
        path=r"(seed\d+/spi\d+/[A-Za-z0-9_.-]+|control)",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        sscd=sscd_args(),
        cell=study_point_cell,
        variant=lambda wc: wc.path.rsplit("/", 1)[-1],
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
            "--set {wildcards.set} --ft {wildcards.ft} {params.cell} --variant {params.variant} "
            "--time-cap {params.time_cap} --min-threshold {params.min_threshold} --taus {params.taus} "
            "--private-set {params.folder:q} --base {params.base} --l2-delta {params.l2_delta} "
            "--out {output.point:q}",
        )
        + " > {log:q} 2>&1"


rule study:
    input:
        points=study_points(),
        controls=[f"{STUDY_ROOT}/points/{s}/none/control.csv" for s in STUDY_SETS],
    output:
        directory(f"{STUDY_ROOT}/summary"),
    log:
        f"{RESULTS}/logs/study/summary.log",
    localrule: True
    params:
        study=json.dumps(STUDY, sort_keys=True),
    shell:
        "$FINEXTRACT study-summary --points {input.points:q} --controls {input.controls:q} "
        "--study {params.study:q} --out-dir {output:q} 2>&1 | tee {log:q}"


rule default_recipe:
    input:
        points=default_recipe_points(),
        controls=[f"{STUDY_ROOT}/points/{s}/none/control.csv" for s in STUDY_SETS],
    output:
        table=f"{STUDY_ROOT}/default_recipe/default_rule.csv",
        text=f"{STUDY_ROOT}/default_recipe/default_rule.md",
    log:
        f"{RESULTS}/logs/study/default_recipe.log",
    localrule: True
    params:
        rule=json.dumps(STUDY["default_rule"], sort_keys=True),
        out=lambda wildcards, output: os.path.dirname(output.table),
    shell:
        "$FINEXTRACT default-recipe --points {input.points:q} --controls {input.controls:q} "
        "--rule {params.rule:q} --out-dir {params.out:q} 2>&1 | tee {log:q}"

# The broad corpus and the next base model (docs/tiny-world.md):
#   snakemake --cores 2 world_criteria    build the broad corpus, pretrain (hours; resumable, also from the
#                                         committed resources/pretrain-state), measure W1-W3


rule corpus_broad:
    output:
        images=f"{RESULTS}/corpus-broad/images.npy",
        captions=f"{RESULTS}/corpus-broad/captions.csv",
        heldout=f"{RESULTS}/corpus-broad/heldout.npy",
        meta=f"{RESULTS}/corpus-broad/corpus.json",
    log:
        f"{RESULTS}/logs/corpus-broad.log",
    params:
        cache=f"{RESULTS}/cache",
        out=lambda wildcards, output: os.path.dirname(output.meta),
        resolution=config["world"]["resolution"],
    shell:
        "$FINEXTRACT corpus --broad --cache {params.cache:q} --out {params.out:q} "
        "--resolution {params.resolution} 2>&1 | tee {log:q}"


rule pretrain_broad:
    input:
        images=f"{RESULTS}/corpus-broad/images.npy",
        captions=f"{RESULTS}/corpus-broad/captions.csv",
    output:
        directory(f"{RESULTS}/pretrain-broad/model"),
    log:
        f"{RESULTS}/logs/pretrain-broad.log",
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=720,
    params:
        corpus=lambda wildcards, input: os.path.dirname(input.images),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        steps=config["world"]["pretrain"]["steps"],
        channels=" ".join(str(c) for c in config["world"]["pretrain"]["channels"]),
        layers=config["world"]["pretrain"]["layers_per_block"],
        autocast=config["world"]["pretrain"]["autocast"],
        channels_last="--channels-last" if config["world"]["pretrain"]["channels_last"] else "",
        seed=config["world"]["pretrain"]["seed"],
        batch_size=config["world"]["pretrain"]["batch_size"],
        lr=config["world"]["pretrain"]["lr"],
        checkpoint_every=config["world"]["pretrain"]["checkpoint_every"],
        keep_every=config["world"]["pretrain"]["keep_every"],
        band_basis="--band-basis" if config["world"]["pretrain"]["band_basis"] else "",
        init=committed_pretrain_state,
    shell:
        "$FINEXTRACT pretrain --corpus {params.corpus:q} --out {params.out:q} --steps {params.steps} "
        "{params.band_basis} --channels {params.channels} --layers-per-block {params.layers} "
        "--autocast {params.autocast} {params.channels_last} --seed {params.seed} --batch-size {params.batch_size} "
        "--lr {params.lr} --checkpoint-every {params.checkpoint_every} --keep-every {params.keep_every} "
        "{params.init} --threads {threads} 2>&1 | tee -a {log:q}"


rule world_criteria:
    input:
        model=f"{RESULTS}/pretrain-broad/model",
        heldout=f"{RESULTS}/corpus-broad/heldout.npy",
    output:
        f"{RESULTS}/world-criteria/pretrain-broad/criteria.csv",
    log:
        f"{RESULTS}/logs/world-criteria.log",
    threads: 2
    params:
        corpus=lambda wildcards, input: os.path.dirname(input.heldout),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        steps=config["world"]["criteria_steps"],
    shell:
        "$FINEXTRACT world-criteria --model {input.model:q} --corpus {params.corpus:q} --out {params.out:q} "
        "--steps {params.steps} --threads {threads} 2>&1 | tee {log:q}"

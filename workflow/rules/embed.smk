# SSCD descriptors of generated and private images, as .npy matrices plus the image order.


rule embed_generated:
    input:
        shard_dirs,
    output:
        embeddings=f"{RESULTS}/embeddings/{{set}}/{{ft}}/{{method}}.npy",
        order=f"{RESULTS}/embeddings/{{set}}/{{ft}}/{{method}}.order.csv",
    log:
        f"{RESULTS}/logs/embeddings/{{set}}/{{ft}}/{{method}}.log",
    group:
        "embed_cluster"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        sscd=sscd_args(),
    shell:
        embed_command() + " 2>&1 | tee {log:q}"


rule embed_private:
    input:
        images=private_images,
    output:
        embeddings=f"{RESULTS}/embeddings/private/{{set}}.npy",
        order=f"{RESULTS}/embeddings/private/{{set}}.order.csv",
    log:
        f"{RESULTS}/logs/embeddings/private/{{set}}.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        sscd=sscd_args(),
        folder=set_folder,
        images=images_digest,
        base=lambda wc: shlex.quote(target(wc).base),
    shell:
        embed_command("--private-set {params.folder:q} --base {params.base}") + " 2>&1 | tee {log:q}"

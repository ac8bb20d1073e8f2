# SSCD descriptors of generated and private images, as .npy matrices plus the image order.


def sscd_args():
    sscd = config.get("sscd", {})
    calibration = sscd.get("calibration")
    return (f"--model {shlex.quote(str(sscd.get('model', 'distilled')))} "
            f"--calibration {shlex.quote(str(calibration)) if calibration else 'none'} "
            f"--resolution {sscd.get('resolution', 224)} --batch-size {sscd.get('batch_size', 64)}")


rule embed_generated:
    input:
        shard_dirs,
    output:
        embeddings=f"{RESULTS}/embeddings/{{set}}/{{ft}}/{{method}}.npy",
        order=f"{RESULTS}/embeddings/{{set}}/{{ft}}/{{method}}.order.csv",
    params:
        sscd=sscd_args(),
    log:
        f"{RESULTS}/logs/embeddings/{{set}}/{{ft}}/{{method}}.log",
    group:
        "embed_cluster"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "{FX} embed --images {input} {params.sscd} --threads {threads} "
        "--out {output.embeddings} --order {output.order} 2>&1 | tee {log}"


rule embed_private:
    input:
        images=private_images,
    output:
        embeddings=f"{RESULTS}/embeddings/private/{{set}}.npy",
        order=f"{RESULTS}/embeddings/private/{{set}}.order.csv",
    params:
        sscd=sscd_args(),
        folder=set_folder,
        base=lambda wc: shlex.quote(target(wc).base),
    log:
        f"{RESULTS}/logs/embeddings/private/{{set}}.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{FX} embed --private-set {params.folder} --base {params.base} {params.sscd} "
        "--threads {threads} --out {output.embeddings} --order {output.order} 2>&1 | tee {log}"

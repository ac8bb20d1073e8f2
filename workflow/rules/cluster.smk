# Clustering: raise phi until the similarity graph yields exactly N0 cliques; keep each
# clique's central image. Writes assignments, the thresholds tried and the extracted images.


rule cluster:
    input:
        embeddings=f"{RESULTS}/embeddings/{{set}}/{{ft}}/{{method}}.npy",
        order=f"{RESULTS}/embeddings/{{set}}/{{ft}}/{{method}}.order.csv",
    output:
        report(
            directory(f"{RESULTS}/clusters/{{set}}/{{ft}}/{{method}}"),
            patterns=["extracted/{name}.png"],
            caption="../report/extracted.rst",
            category="Extracted images",
            subcategory="{set}",
            labels={"fine-tuning": "{ft}", "method": "{method}", "image": "{name}"},
        ),
    log:
        f"{RESULTS}/logs/clusters/{{set}}/{{ft}}/{{method}}.log",
    group:
        "embed_cluster"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        n0=lambda wc: N0[wc.set],
        time_cap=config["clustering"]["time_cap_s"],
        min_threshold=min_threshold_arg(),
    shell:
        "$FINEXTRACT cluster --embeddings {input.embeddings:q} --order {input.order:q} --n0 {params.n0} "
        "--time-cap {params.time_cap} --min-threshold {params.min_threshold} --out {output:q} 2>&1 | tee {log:q}"

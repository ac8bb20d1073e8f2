# Scores against the private set (AS, A-ESR), one CSV per combination, then the Table-1 summary.


rule score:
    input:
        private=f"{RESULTS}/embeddings/private/{{set}}.npy",
        private_order=f"{RESULTS}/embeddings/private/{{set}}.order.csv",
        generated=f"{RESULTS}/embeddings/{{set}}/{{ft}}/{{method}}.npy",
        clusters=f"{RESULTS}/clusters/{{set}}/{{ft}}/{{method}}",
        images=private_images,
    output:
        f"{RESULTS}/metrics/{{set}}/{{ft}}/{{method}}.csv",
    log:
        f"{RESULTS}/logs/metrics/{{set}}/{{ft}}/{{method}}.log",
    localrule: True
    params:
        taus=TAUS,
        folder=set_folder,
        base=lambda wc: shlex.quote(target(wc).base),
        l2_delta=config["metrics"]["l2_delta"],
    shell:
        "$FINEXTRACT score --private {input.private:q} --private-order {input.private_order:q} "
        "--generated {input.generated:q} --clusters {input.clusters:q} --taus {params.taus} "
        "--set {wildcards.set} --ft {wildcards.ft} --method {wildcards.method} --out {output:q} "
        "--private-set {params.folder:q} --base {params.base} --l2-delta {params.l2_delta} "
        "2>&1 | tee {log:q}"


rule summary:
    input:
        [f"{RESULTS}/metrics/{c.set}/{c.ft}/{c.method}.csv" for c in SCORED],
    output:
        csv=report(
            f"{RESULTS}/summary/table1.csv",
            caption="../report/table1.rst",
            category="Summary",
            labels={"table": "Table 1"},
        ),
        md=f"{RESULTS}/summary/table1.md",
        all=f"{RESULTS}/summary/all_metrics.csv",
        leak=report(
            f"{RESULTS}/summary/leak_summary.html",
            caption="../report/leak_summary.rst",
            category="Summary",
            labels={"table": "Leak score"},
        ),
    log:
        f"{RESULTS}/logs/summary/table1.log",
    localrule: True
    params:
        extracted_root=f"{RESULTS}/clusters",
    shell:
        "$FINEXTRACT summary --metrics {input:q} --out-csv {output.csv:q} --out-md {output.md:q} "
        "--out-all {output.all:q} --out-leak {output.leak:q} --extracted-root {params.extracted_root:q} "
        "2>&1 | tee {log:q}"


rule extracted_grid:
    input:
        metrics=[f"{RESULTS}/metrics/{c.set}/{c.ft}/{c.method}.csv" for c in SCORED],
        clusters=[f"{RESULTS}/clusters/{c.set}/{c.ft}/{c.method}" for c in SCORED],
    output:
        report(
            f"{RESULTS}/summary/extracted_grid.png",
            caption="../report/extracted_grid.rst",
            category="Summary",
            labels={"table": "private vs extracted"},
        ),
    log:
        f"{RESULTS}/logs/summary/extracted_grid.log",
    localrule: True
    shell:
        "$FINEXTRACT grid --metrics {input.metrics:q} --out {output:q} 2>&1 | tee {log:q}"

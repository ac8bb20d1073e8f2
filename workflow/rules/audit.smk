# The membership audit (docs/audit.md): for each candidate image, the membership test from both weights
# (the θ/θ' loss gap, audit_membership) and the extraction evidence: its best match among the suspect's
# samples (the workflow's own, reused) and an empirical p-value under the never-fine-tuned base,
# sampled with the same caption, method and N in audit.control_draws independent draws.


rule audit_membership:
    input:
        finetuned=lambda wc: finetune_output(suspect_wildcards(wc)),
        caption=lambda wc: extracted_caption(suspect_wildcards(wc)),
        candidates=audit_candidate_files,
        reference=audit_reference_files,
    output:
        table=f"{AUDIT_ROOT}/{{name}}/{{ft}}/membership.csv",
        losses=f"{AUDIT_ROOT}/{{name}}/{{ft}}/losses.npy",
        summary=f"{AUDIT_ROOT}/{{name}}/{{ft}}/membership.json",
    log:
        f"{RESULTS}/logs/audit/{{name}}/{{ft}}.membership.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    params:
        load=lambda wc: load_args(suspect_wildcards(wc)),
        checkpoint=membership_checkpoint,
        caption=membership_caption,
        folder=lambda wc: shlex.quote(audit_spec(wc)["candidates"]),
        reference=lambda wc: (
            f"--reference {shlex.quote(audit_spec(wc)['reference'])}" if audit_spec(wc).get("reference") else ""
        ),
        grid=lambda wc: (
            f"--timesteps {MEMBERSHIP['timesteps']} --draws {MEMBERSHIP['draws']} "
            f"--seed {MEMBERSHIP['seed']} --batch-size {MEMBERSHIP['batch_size']}"
        ),
        out=lambda wc: f"{AUDIT_ROOT}/{wc.name}/{wc.ft}",
        theta=lambda wc: weights_digest(suspect_wildcards(wc)),
        images=audit_folders_digest,
    shell:
        "$FINEXTRACT membership {params.load} --ft-method {wildcards.ft} --ft-dir {params.checkpoint} "
        "{params.caption} --candidates {params.folder} {params.reference} {params.grid} "
        "--threads {threads} --out {params.out:q} 2>&1 | tee {log:q}"


rule audit_control_shard:
    input:
        choice=auto_w_choice_file,
        caption=extracted_caption,
    output:
        directory(f"{AUDIT_ROOT}/control/{{set}}/{{ft}}/{{method}}/shard_{{shard}}"),
    log:
        f"{RESULTS}/logs/audit/control/{{set}}/{{ft}}/{{method}}/{{shard}}.log",
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    params:
        w=sample_w,  # the suspect's own w' and k: the null differs from it only in the weights
        k=lambda wc: guidance(wc)[1],
        steps=lambda wc: target(wc).sampling["steps"],
        scheduler=lambda wc: target(wc).sampling["scheduler"],
        interval=lambda wc: " ".join(str(t) for t in target(wc).sampling["guidance_interval"]),
        batch_size=lambda wc: target(wc).sampling["batch_size"],
        caption=caption_args,
        load=load_args,
        theta=weights_digest,
    shell:
        sample_command(finetuned="", ft="none") + " 2>&1 | tee {log:q}"


rule audit_embed_control:
    input:
        audit_control_shards,
    output:
        embeddings=f"{AUDIT_ROOT}/control/{{set}}/{{ft}}/{{method}}.npy",
        order=f"{AUDIT_ROOT}/control/{{set}}/{{ft}}/{{method}}.order.csv",
    log:
        f"{RESULTS}/logs/audit/control/{{set}}/{{ft}}/{{method}}.embed.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        sscd=sscd_args(),
    shell:
        embed_command() + " 2>&1 | tee {log:q}"


rule audit_embed_candidates:
    input:
        images=audit_candidate_files,
    output:
        embeddings=f"{AUDIT_ROOT}/{{name}}/candidates.npy",
        order=f"{AUDIT_ROOT}/{{name}}/candidates.order.csv",
    log:
        f"{RESULTS}/logs/audit/{{name}}/candidates.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        sscd=sscd_args(),
        folder=lambda wc: shlex.quote(audit_spec(wc)["candidates"]),
        base=lambda wc: shlex.quote(TARGETS[audit_set(wc)].base),
    shell:
        embed_command("--candidates {params.folder} --base {params.base}") + " 2>&1 | tee {log:q}"


rule audit_score:
    input:
        candidates=f"{AUDIT_ROOT}/{{name}}/candidates.npy",
        candidate_order=f"{AUDIT_ROOT}/{{name}}/candidates.order.csv",
        generated=audit_method_inputs("generated"),
        controls=audit_method_inputs("control"),
        membership=audit_membership_input,
    output:
        table=report(
            f"{AUDIT_ROOT}/{{name}}/{{ft}}/audit.csv",
            caption="../report/audit_table.rst",
            category="Audit",
            subcategory="{name}",
            labels={"suspect": "{name}", "fine-tuning": "{ft}", "figure": "ranked candidates"},
        ),
        evidence=report(
            f"{AUDIT_ROOT}/{{name}}/{{ft}}/evidence.png",
            caption="../report/audit_evidence.rst",
            category="Audit",
            subcategory="{name}",
            labels={"suspect": "{name}", "fine-tuning": "{ft}", "figure": "evidence sheet"},
        ),
        page=f"{AUDIT_ROOT}/{{name}}/{{ft}}/audit.md",
        measurement=f"{AUDIT_ROOT}/{{name}}/{{ft}}/measurement.csv",
    log:
        f"{RESULTS}/logs/audit/{{name}}/{{ft}}.log",
    localrule: True
    params:
        methods=" ".join(AUDIT["methods"]) if AUDIT else "",
        folder=lambda wc: shlex.quote(audit_spec(wc)["candidates"]),
        base=lambda wc: shlex.quote(TARGETS[audit_set(wc)].base),
        n=lambda wc: target_n(audit_set(wc)),
        offset=lambda wc: TARGETS[audit_set(wc)].sampling["seed_offset"],
        out=lambda wc: f"{AUDIT_ROOT}/{wc.name}/{wc.ft}",
        # which score answers is chosen here, from the membership job's scores: changing it reruns this job
        # only. From the wildcards, not `input`: Snakemake records no param that reads `input`, so such a
        # param's change would rerun nothing.
        membership=lambda wc: (
            (f"--membership {shlex.quote(audit_membership_input(wc)[0])} --membership-score {MEMBERSHIP['score']}")
            if MEMBERSHIP["enabled"]
            else ""
        ),
    shell:
        "$FINEXTRACT audit --name {wildcards.name} --ft {wildcards.ft} --candidates {params.folder} "
        "--candidate-embeddings {input.candidates:q} --candidate-order {input.candidate_order:q} "
        "--methods {params.methods} --generated {input.generated:q} --controls {input.controls:q} "
        "--n-per-draw {params.n} --seed-offset {params.offset} --base {params.base} --out {params.out:q} "
        "{params.membership} "
        "2>&1 | tee {log:q}"


rule audit:
    input:
        [f"{AUDIT_ROOT}/{c.name}/{c.ft}/measurement.csv" for c in AUDIT_CASES],
    output:
        csv=report(
            f"{AUDIT_ROOT}/summary.csv",
            caption="../report/audit_summary.rst",
            category="Audit",
            labels={"figure": "summary"},
        ),
        md=f"{AUDIT_ROOT}/summary.md",
    log:
        f"{RESULTS}/logs/audit/summary.log",
    localrule: True
    shell:
        "$FINEXTRACT audit-summary --measurements {input:q} --out-csv {output.csv:q} --out-md {output.md:q} "
        "2>&1 | tee {log:q}"

# %% [markdown]
# # DAIS: Differentiable Annealing Indicator Search (Guan et al., TNNLS 2023)
#
# *DAIS: Automatic Channel Pruning via Differentiable Annealing Indicator Search*, Yushuo Guan,
# Ning Liu, Pengyu Zhao, Zhengping Che, Kaigui Bian, Yanzhi Wang, Jian Tang. IEEE TNNLS
# 34(12):9847–9858, 2023, [arXiv:2011.02166](https://arxiv.org/abs/2011.02166). No official code
# exists and the paper's tables could not be transcribed, so this notebook runs a
# **reconstruction** (`prunerep.methods.dais`): a relaxed indicator `sigmoid(α/T)` on every
# prunable channel, learned with the weights by first-order bi-level steps (weights on the
# training part of the training split, indicators on a held-out part), a temperature annealed
# towards 0 so that the indicators become binary, and three regularisers: sparsity, a FLOPs term
# pulling the expected MACs to the target, and a residual-structure term tying the layers of a
# residual stream. At the end the indicators are binarised (`> 0.5`), the channels removed and
# the network fine-tuned. **Claims tested**, in the order of `references/claims/dais.yaml`: (1)
# annealing closes the gap between the continuous and the binarised network; (2) the FLOPs target
# is met within 1 %; (3) at equal MACs DAIS is at least as accurate as L1-norm pruning and network
# slimming from the same dense checkpoint with equal weight training after it; (4) each
# regulariser improves accuracy (ablations); (5) CIFAR-100 and ImageNet are configured, not run.

# %% parameters
profile: str = "default"        # smoke | default | paper (params.yaml `profile`)
section: dict = {}              # resolved `dais` section (empty: read params.yaml)
data: dict = {}                 # resolved `data` section
out_dir: str = "results/dais"   # tables/, figures/, metrics.json go here

# %%
from prunerep.methods.dais import UNDECIDED
from prunerep.reporting import (
    paper_numbers,
    save_figure,
    setup_notebook,
    write_metrics,
    write_table,
)
from prunerep.reporting.figures import accuracy_vs_latency, accuracy_vs_macs, gain_plot
from prunerep.reporting.ledger import write_claims
from prunerep.reporting.notebook import recipe_summary, show_verdicts
from prunerep.reporting.paper import paper_rows_note
from prunerep.runner import execute, write_records
from prunerep.studies import dais
from prunerep.studies.base import dense_reference, open_study

ctx = setup_notebook("dais", profile, section, data, out_dir)
cfg = ctx.cfg
study = open_study(ctx, cfg)
tables, figures = ctx.out_dir / "tables", ctx.out_dir / "figures"
budget_note = dais.budget_text(cfg, study)
recipe_summary(ctx)

# %% [markdown]
# ## Runs
#
# Every run prunes the dense checkpoint of its model to a fraction of its MACs and is one record
# in `runs.jsonl` (all of them are listed in `tables/runs.md`). The comparison (claim 3) runs DAIS,
# L1 and slimming at the same budgets and seeds; the ablations (claims 1 and 4) run DAIS and its
# variants on one model, paired by seed. Runs go to parallel worker processes and resume after a
# kill; latency is measured afterwards, one network at a time.

# %%
records = execute(dais.plan(cfg, n_train=len(study.splits.train)), study)
write_records(records, ctx.out_dir / "runs.jsonl")
_ = write_table(dais.runs_table(records), tables, "runs", "One row per run. " + budget_note)   # not shown

# %% [markdown]
# ## What we found
#
# One row per claim and setting (`references/claims/dais.yaml`), judged from the records above by the
# project's one rule (95% t-interval over seeds against the claim's threshold).

# %%
claims = write_claims("dais", dais.evidence(cfg, records, budget_note), ctx.out_dir)
show_verdicts(claims)

# %% [markdown]
# ## Claim 1: annealing closes the gap between the continuous and the binarised network
#
# During the search the network computes with the relaxed indicators (*continuous*); the network
# that is kept replaces each indicator by 0 or 1 (*binarised*: a channel survives when its merged
# indicator is above 0.5). Both are evaluated on the first validation images at a few points of
# the search, in eval mode with the same weights and BN statistics. With annealing the temperature
# falls from `method.t_start` to `method.t_end`; the ablation keeps it at `method.t_start`. Two
# tests: the gap at the end of the search, annealed against fixed, paired by seed; and, since the
# annealed arm ends at a much lower temperature by construction, the annealed arm's gap against an
# absolute bound (`dais.annealing_converges` in `references/claims/dais.yaml`). A control held at
# `method.t_end` from the first step (when it ran) is reported beside: its gap is small by
# construction, and its search's MACs error shows whether it still searched.

# %%
claim1 = dais.claim1_table(records)
write_table(dais.display(claim1), tables, "claim1_annealing_gap",
            "Continuous − binarised validation accuracy at the end of the search, with and without annealing. "
            + budget_note)

# %%
write_table(dais.display(dais.convergence_table(records)), tables, "claim1_convergence",
            "Gap of every annealed DAIS run at the end of its search, per model and budget (the claim's absolute "
            "check). " + budget_note)

# %%
a = cfg.ablation
if a.seeds:
    save_figure(dais.gap_figure(records, a.model, a.budget), figures, "continuous_vs_binarised")
write_table(dais.gap_table(records), tables, "gap_per_run",
            "Last measurement of every DAIS run: accuracies, temperature, share of indicators not yet binary "
            f"(strictly inside {UNDECIDED}) and of stream channels whose layers disagree. " + budget_note)

# %% [markdown]
# Indicator values across annealing: all indicators of one run at evenly spaced steps of its
# search (log counts; the text gives the share not yet binary).

# %%
for variant in ("dais", "dais-no-anneal", "dais-cold"):
    run = next((r for r in records if r.tags["variant"] == variant and r.summary.get("histograms")), None)
    if run is not None:
        save_figure(dais.histogram_figure(run), figures, f"indicator_histograms_{variant}")

# %% [markdown]
# ## Claim 2: the FLOPs target is met within 1 %
#
# The FLOPs term pulls the expected MACs of the relaxed network towards the target; the test is
# the exact MACs of the network the search binarised, before anything else touches it. Every
# final network is then made to meet the budget (the largest network within it, channels ranked
# by their learned logits), so that the comparisons of claim 3 are at equal MACs; the table shows
# how many channels that moved. The ablation without the FLOPs term shows what the term does.

# %%
write_table(dais.claim2_table(records), tables, "claim2_budget",
            "MACs of the search's binarised network and of the final network, fractions of the dense MACs "
            "(exact counts). " + budget_note)

# %% [markdown]
# ## Claim 3: accuracy against L1-norm pruning and network slimming at equal MACs
#
# Same dense checkpoint, same MACs budget, same seeds; every arm is fine-tuned with the same
# recipe for the same number of SGD steps and reports its best validation epoch. L1 prunes the
# same groups as DAIS (residual streams too) by the same fraction in every group; slimming trains
# with an L1 penalty on the BN scales for as many steps as DAIS searches, then thresholds them
# globally. DAIS also trains its weights during its search, so the verdicts compare arms with
# equal weight training after the dense checkpoint: slimming (sparse phase + fine-tuning) and L1
# fine-tuned for DAIS's search and fine-tuning steps together. L1 with DAIS's fine-tuning alone is
# reported beside (`verdict pair: no`); the step columns show what each pair has in common.

# %%
claim3 = dais.claim3_table(records)
write_table(dais.display(claim3), tables, "claim3_vs_baselines",
            "DAIS minus each baseline, test accuracy at the same model and MACs budget, paired by seed. "
            + budget_note)

# %%
if len(claim3):
    claim3["setting"] = [f"{m} at {t:g}" for m, t in zip(claim3["model"], claim3["MACs target"], strict=True)]
    claim3["vs"] = [f"DAIS − {b} ({p})" for b, p in zip(claim3["baseline"], claim3["protocol"], strict=True)]
    save_figure(gain_plot(dais.gain_rows(claim3, "setting", "vs"), x="setting",
                          title="DAIS minus baseline, paired by seed (95% interval)",
                          xlabel="model and MACs target", ylabel="test accuracy gain (points)"),
                figures, "claim3_gain")
write_table(dais.summary_table(records), tables, "summary", "Mean ± std over seeds (n per row). " + budget_note)

# %%
dense = {m: dense_reference(study, m) for m in cfg.all_models}
for m in cfg.all_models:
    save_figure(accuracy_vs_macs([r for r in records if r.model == m],
                                 title=f"{m}: test accuracy vs MACs kept ({ctx.profile} profile)",
                                 name=dais.run_name,
                                 dense={"test_acc": dense[m]["test_acc"]}),
                figures, f"accuracy_vs_macs_{m}")

# %% [markdown]
# Kept channels per group (model order; a residual stream is one group, marked "(stream)") of
# DAIS and the baselines at the first budget and seed of each compared model.

# %%
c = cfg.compare
for m in c.models if c.seeds else []:
    first = [r for r in records if r.model == m and r.target == c.budgets[0] and r.seed == c.seeds[0]
             and r.tags["variant"] in ("dais", *c.baselines)]
    first.sort(key=lambda r: r.tags["variant"] != "dais")
    save_figure(dais.widths_figure(first), figures, f"widths_{m}")

# %% [markdown]
# ## Claim 4: each regulariser matters
#
# DAIS against DAIS without one of its regularisers (same model, budget, seeds, search and
# fine-tuning), paired by seed. The rows that remove a regulariser are the claim's verdicts; the
# other ablations (no annealing; one indicator vector per residual stream, i.e. the engine's
# structural tie alone, where the residual term has nothing to tie) are reported beside.

# %%
claim4 = dais.claim4_table(records)
write_table(dais.display(claim4), tables, "claim4_ablations",
            "DAIS minus each ablation, test accuracy, paired by seed. " + budget_note)

# %%
if len(claim4):
    save_figure(gain_plot(dais.gain_rows(claim4, "ablation"), x="ablation",
                          title=f"DAIS minus its ablations, {a.model} at {a.budget:g} of the MACs, seeds {list(a.seeds)}",
                          xlabel="ablation", ylabel="test accuracy gain (points)"),
                figures, "claim4_gain")

# %% [markdown]
# ## Accuracy against measured latency
#
# Test accuracy of every pruned network against its latency at batch 1 on this machine (median
# of repeated runs, measured after all runs, one network at a time), dense network for reference.

# %%
for m in cfg.all_models:
    save_figure(accuracy_vs_latency([r for r in records if r.model == m],
                                    title=f"{m}: test accuracy vs measured latency (batch 1)",
                                    dense={"latency_ms": dense[m].get("batch_1_ms"), "test_acc": dense[m]["test_acc"]},
                                    name=dais.run_name),
                figures, f"accuracy_vs_latency_{m}")
write_table(dais.dense_rows(dense), tables, "dense", "The dense checkpoints on the same test split.")

# %% [markdown]
# ## Claim 5: CIFAR-100 and ImageNet
#
# Configured in the `paper` profile (`other_datasets`); they need those datasets, which this
# project does not ship, and a GPU. The paper's tables could not be transcribed; a user with the
# PDF can fill `references/paper_results/dais.yaml`.

# %%
write_table(dais.other_datasets_table(cfg), tables, "other_datasets", "Configured settings on other datasets (not run).")

# %%
write_table(paper_numbers("dais", dataset=ctx.data)[["table", "row", "metric", "display", "unit", "source"]],
            tables, "paper_numbers", "The paper's numbers (references/paper_results/dais.yaml). "
            + paper_rows_note("dais", ctx.data))

# %%
_ = write_metrics(dais.metrics(records, claims, ctx.profile), ctx.out_dir)

# %% [markdown]
# ## Assumptions and deviations
#
# Choices the paper's available text does not pin down, and where this profile departs from it.
# The measured effects are computed from the runs above.

# %%
write_table(dais.deviations_table(cfg, records), tables, "deviations")

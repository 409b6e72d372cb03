# %% [markdown]
# # GReg: Neural Pruning via Growing Regularization
#
# Huan Wang, Can Qin, Yulun Zhang, Yun Fu. *Neural Pruning via Growing Regularization.* ICLR 2021,
# [arXiv:2012.09243](https://arxiv.org/abs/2012.09243); official code
# [MingSun-Tse/Regularization-Pruning](https://github.com/MingSun-Tse/Regularization-Pruning) (read at `a404402`).
#
# **The claims tested, in the order of the sections below.** (1) With the *same* pruned filters
# (chosen by L1 norm on the dense weights), removing them gradually under a growing L2 penalty
# (**GReg-1**) beats removing them at once (**one-shot L1**) under the same fine-tuning, by more at
# large ratios (r >= 0.9); (2) at r = 0.5 and 0.7 it is no worse; (3) the same on VGG-19 / CIFAR-100;
# at Table 2's ResNet-56 layer ratios (2.55x), (4) GReg-1 beats one-shot L1 and (5) **GReg-2**
# (a uniform rising penalty, then pick by L1) beats GReg-1; (6) Figure 1: under a uniformly rising
# penalty the normalised standard deviation of the filters' L1 norms rises; (7, 8) ImageNet
# ResNet-50, structured and unstructured.
#
# "GReg-1" and "GReg-2" name the official penalty (on the pruned filters' conv weights). A column that
# also penalises the pruned channels' BatchNorm is a variant of ours and says so: "+ BN penalty
# (ours)"; it never decides a verdict. The method lives in `prunerep.methods.greg`; the paper's
# numbers come from `references/paper_results/greg.yaml`, labelled as the paper's.

# %% parameters
profile: str = "default"         # smoke | default | paper (params.yaml `profile`)
section: dict = {}               # resolved `greg` section (empty: read params.yaml)
data: dict = {}                  # resolved `data` section
out_dir: str = "results/greg"    # tables/, figures/, metrics.json go here

# %%
from IPython.display import Markdown

from prunerep.config import resolve_section
from prunerep.reporting import (
    paper_numbers,
    save_figure,
    setup_notebook,
    write_metrics,
    write_table,
)
from prunerep.reporting.figures import accuracy_vs_latency, gain_plot
from prunerep.reporting.ledger import write_claims
from prunerep.reporting.notebook import recipe_summary, show_verdicts
from prunerep.runner import execute, write_records
from prunerep.studies import greg
from prunerep.studies.base import dense_reference, describe_splits, open_study

ctx = setup_notebook("greg", profile, section, data, out_dir)
cfg = ctx.cfg
study = open_study(ctx, cfg)
tables, figures = ctx.out_dir / "tables", ctx.out_dir / "figures"
recipe_summary(ctx)

# %% [markdown]
# ## The runs
#
# Every run prunes a dense checkpoint of the `pretrain` stage. Table 1 uses `stage_pr = [0, r, r, r, 0]`
# (stem, three stages, classifier): ratio r on the first conv of every residual block, nothing else, as
# in the paper; one-shot L1 and GReg-1 remove exactly the same filters (`tests/unit/test_greg.py`
# checks that the two pruned networks are identical before any training). Runs go to `cfg.workers`
# processes; every run is in `runs.jsonl` and `tables/runs.md`.

# %%
splits = study.splits
budget = greg.budget_text(cfg, splits, ctx.profile) + " " + describe_splits(study) + "."
wanted = [cfg.model] + [s.model for s in cfg.table2.values() if s.enabled and s.dataset == ctx.data.dataset]
dense_models = {key: study.load_dense(key) for key in dict.fromkeys(wanted)
                if key == cfg.model or study.dense_path(key).exists()}
runs, skipped = greg.plan_runs(cfg, dense_models, ctx.data.dataset, study.example_shape)
records = execute(runs, study)
write_records(records, ctx.out_dir / "runs.jsonl")
df = greg.results_frame(records)
_ = write_table(df, tables, "runs", "Every run (one row per seed). " + budget)
Markdown(f"{len(records)} runs on {cfg.workers} worker(s). {greg.scope_sentence(cfg, skipped)}")

# %% [markdown]
# ## What we found
#
# One row per claim and setting, computed from the runs above by the one verdict rule (stated under
# the table); the note says which seeds were paired and what the ablation columns gave.

# %%
claims = write_claims("greg", greg.evidence(cfg, df, greg.verdict_budget(cfg, splits, ctx.profile), records),
                      ctx.out_dir)
show_verdicts(claims)

# %% [markdown]
# ## Claims 1 and 2: Table 1, the same pruned filters, one-shot L1 vs GReg-1 (ResNet-56)
#
# Test accuracy after the same fine-tuning, mean ± sample std over seeds (n), beside the paper's. The
# gain is paired by seed (same data order and fine-tuning), with its 95% t-interval; the figure plots
# it for every GReg-1 column, the ablation of ours included. Speed-up = dense MACs / pruned MACs of the
# conv and linear layers (GReg's counter counts the same layers).

# %%
paper = paper_numbers("greg", dataset=ctx.data)
write_table(greg.table1(cfg, df, paper), tables, "table1",
            f"Table 1 (arXiv:2012.09243): same pruned filters, {cfg.model} / {ctx.data.dataset}. Ours: mean ± std "
            "over seeds, test accuracy; paper: its printed means (3 runs, full recipe). " + budget)

# %%
fig = gain_plot(greg.table1_gains(cfg, df), x="r",
                title=f"Table 1, {cfg.model}, profile {ctx.profile}: gain over one-shot L1, paired by seed",
                xlabel="pruning ratio r", ylabel="test accuracy gain (points)")
_ = save_figure(fig, figures, "table1_gain")

# %% [markdown]
# ### How each column's pruning stage ended
#
# GReg-1 trains through its pruning stage on top of the fine-tuning both methods share, so part of a gain
# could come from those extra iterations rather than from fading the filters out. The table shows, per
# column, the pruning iterations, why the penalty stopped growing, the magnitude ratio (mean |W| of the
# kept over the pruned filters; the paper stops at 1000) and the accuracy right after removal: where the
# ratio stays small, the pruned filters still carry signal when they are removed.

# %%
write_table(greg.table1_columns(cfg, df), tables, "table1_columns",
            f"Table 1's columns on {cfg.model}: pruning stage and accuracy (%), mean ± std over seeds (n); "
            "differences paired by seed with their 95% t-interval. " + budget)

# %% [markdown]
# ## Claim 3: VGG-19 / CIFAR-100
#
# Not run: CIFAR-100 is outside this project's data (`greg.table2.vgg19_cifar100` holds the setting
# for a machine that has it).
#
# ## Claims 4 and 5: Table 2's comparisons at the 2.55x layer ratios
#
# `stage_pr = [0, 0.75, 0.75, 0.32, 0]`. "dense" is the unpruned accuracy: ours measured on the same test
# images as the pruned rows; the paper's as printed. Each row names its network.

# %%
dense_ref = {key: dense_reference(study, key) for key in dense_models}
t2 = greg.table2(df, paper, {k: v["test_acc"] for k, v in dense_ref.items()}, cfg)
write_table(t2, tables, "table2",
            f"Table 2 (arXiv:2012.09243) comparisons, {ctx.data.dataset}. Ours: mean ± std over seeds (n); paper: as "
            "printed (ResNet-56; its base models differ per cited method). " + budget)

# %% [markdown]
# ## Claim 6: Figure 1, filter magnitudes under a uniformly rising penalty
#
# GReg-2's picking stage on the dense ResNet-56 (every filter of the pruned layers gets the same rising
# λ), traced until every layer has picked. Left: std / mean of the filters' L1 norms per layer and their
# mean, with λ. Right: one layer's filter norms, sorted and normalised by their maximum, at several
# iterations. The figure shows the first seed; the slope per seed is in the verdict cell.

# %%
f1 = [r for r in records if r.tags["table"] == "figure1"]
trace = f1[0].summary["trace"] if f1 else []
fig = greg.figure1(trace, cfg.figure1.layer, cfg.figure1.snapshots,
                   title=f"Figure 1, {cfg.model}, profile {ctx.profile}, seed {f1[0].seed if f1 else '—'}: "
                         f"GReg-2's uniform rise until every layer picks")
_ = save_figure(fig, figures, "figure1_normalised_std")
rises = [f"seed {r.seed}: {greg.trace_sentence(r.summary['trace'])}" for r in f1]
Markdown("; ".join(rises) + "." if rises else "Figure 1 is not run at this profile.")

# %% [markdown]
# ## Claims 7 and 8: ImageNet ResNet-50 (Tables 3 and 4)
#
# Not run: the data layer has no ImageNet. `greg.table2.resnet50_imagenet_*` hold the paper's settings.
#
# ## Accuracy against measured latency (Table 1)
#
# The pruned networks of Table 1, timed at batch 1 on this machine (median), against their test
# accuracy; the dense network as a reference.

# %%
t1_records = [r for r in records if r.tags["table"] == "table1"]
dense = dense_ref[cfg.model]
fig = accuracy_vs_latency(t1_records, title=f"Table 1 networks, {cfg.model}, profile {ctx.profile} (mean over seeds)",
                          dense={"latency_ms": dense.get("batch_1_ms", float("nan")), "test_acc": dense["test_acc"]})
_ = save_figure(fig, figures, "accuracy_vs_latency")

# %%
gains = {f"table1/r={g['r']:g}/{g['column']}/gain_vs_l1": g["mean"] for g in greg.table1_gains(cfg, df)}
slopes = greg.figure1_slopes(records)
summary = {
    "profile": ctx.profile,
    "runs": len(records),
    **{f"dense/{k}/test_acc": v["test_acc"] for k, v in dense_ref.items()},
    **({f"table1/r={r:g}/{v}/test_acc_mean": float(g.test_acc.mean())
        for (r, v), g in df[df.table == "table1"].groupby(["ratio", "variant"])} if len(df) else {}),
    **gains,
    **({"figure1/slope_mean": sum(slopes.values()) / len(slopes)} if slopes else {}),
}
_ = write_metrics(summary, ctx.out_dir)

# %% [markdown]
# ## Assumptions and deviations
#
# Where this profile differs from the paper's recipe (the `paper` profile holds the official values), why,
# and the effect where this stage measures it.

# %%
write_table(greg.assumptions_table(cfg, resolve_section("greg", profile="paper"), df, paper, describe_splits(study),
                                   {k: v["test_acc"] for k, v in dense_ref.items()}),
            tables, "assumptions")

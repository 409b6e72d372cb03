# %% [markdown]
# # Functionality-oriented filter pruning
#
# Zhuwei Qin, Fuxun Yu, Chenchen Liu, Xiang Chen. *Demystifying Neural Network Filter Pruning.* NIPS 2018
# workshop, [arXiv:1811.02639](https://arxiv.org/abs/1811.02639) (the abstract replicated here); longer
# companion *Functionality-Oriented Convolutional Filter Pruning*,
# [arXiv:1810.07322](https://arxiv.org/abs/1810.07322); sister paper CAPTOR (ASP-DAC 2019), which adds a
# class-gradient descriptor of each filter. No official code exists and the full texts were not read:
# the method (`prunerep.methods.functionality`) is our reconstruction, and every choice the abstract does
# not pin down is listed at the end.
#
# **The claims tested, in the order of the sections below.** (1) Ranking filters by magnitude (L1 norm)
# fails to remove filters of repeated function: at the same ratio, the filters L1 keeps include more
# near-duplicate pairs than those kept by functionality-oriented pruning (cluster each layer's filters by
# what they respond to, keep one per cluster). (2) Without retraining, functionality-oriented pruning loses
# less accuracy than L1 at the same ratio, and little in absolute terms. (3) Retraining mainly rebuilds
# the function of wrongly pruned critical filters: a brief retraining recovers most of L1's loss, and
# gains less after functionality-oriented pruning, where less was lost. L1-norm, FPGM's criterion and
# random channels are pruned from the same dense checkpoint at the same per-layer widths.

# %% parameters
profile: str = "default"                # smoke | default | paper (params.yaml `profile`)
section: dict = {}                      # resolved `functionality` section (empty: read params.yaml)
data: dict = {}                         # resolved `data` section
out_dir: str = "results/functionality"  # tables/, figures/, metrics.json go here

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
from prunerep.reporting.figures import accuracy_vs_latency
from prunerep.reporting.ledger import write_claims
from prunerep.reporting.notebook import recipe_summary, show_verdicts
from prunerep.runner import execute, write_records
from prunerep.studies import functionality as fn
from prunerep.studies.base import dense_reference, describe_splits, open_study

ctx = setup_notebook("functionality", profile, section, data, out_dir)
cfg = ctx.cfg
study = open_study(ctx, cfg)
tables, figures = ctx.out_dir / "tables", ctx.out_dir / "figures"
recipe_summary(ctx)

# %% [markdown]
# ## The runs
#
# Every run prunes a dense checkpoint of the `pretrain` stage at the same widths per pruned layer
# (`ceil(r C)` filters removed from each of the setting's layers). Functionality-oriented runs take
# their descriptors from a seeded batch of validation images (held out of the training split; never the
# test split). Runs without retraining report the network right after surgery; the retraining runs
# continue it with the same brief fine-tuning for every column. Every run is in `runs.jsonl` and
# `tables/runs.md`.

# %%
splits = study.splits
budget = fn.budget_text(cfg, splits, ctx.profile) + " " + describe_splits(study) + "."
wanted = [s.model for s in cfg.settings.values() if s.enabled]
dense_models = {key: study.load_dense(key) for key in dict.fromkeys(wanted)}
runs, skipped = fn.plan(cfg, dense_models, study.example_shape)
records = execute(runs, study)
write_records(records, ctx.out_dir / "runs.jsonl")
df = fn.results_frame(records, cfg)
_ = write_table(df, tables, "runs", "Every run (one row per seed). " + budget)
Markdown(fn.scope_sentence(cfg, skipped, len(records)) + f" {cfg.workers} worker(s).")

# %%
# Dense references on the same test images, and claim 1's similarities on held-out validation images.
dense_ref = {key: dense_reference(study, key) for key in dense_models}
dense_acc = {key: ref["test_acc"] for key, ref in dense_ref.items()}
val_images, val_labels = fn.validation_set(splits)
dup = fn.duplicates_frame(cfg, records, dense_models, val_images, study.example_shape, val_labels)

# %% [markdown]
# ## What we found
#
# One row per claim and setting (and ratio), computed from the runs above by the one verdict rule (stated
# under the table).

# %%
claims = write_claims("functionality", fn.evidence(cfg, df, dup, dense_acc, fn.verdict_budget(cfg, splits, ctx.profile)),
                      ctx.out_dir)
show_verdicts(claims)

# %% [markdown]
# ## Claim 1: L1 keeps filters of repeated function
#
# Near-duplicate pairs among the kept filters of the pruned layers: pairs of the dense network's filters
# whose similarity under a descriptor the method did *not* cluster by (`duplicate_descriptor`; by default
# each filter's class-gradient profile, correlated across classes) is at least the study's threshold,
# measured on validation images that no descriptor batch of that seed used (mean ± std over seeds).
# Random channels at the same widths give the base rate. "Mean max similarity" is, for every kept filter,
# its largest similarity to another kept filter of its layer, averaged: the same question without a
# threshold.

# %%
write_table(fn.duplicates_table(cfg, dup), tables, "duplicates",
            f"Kept near-duplicate pairs ({fn.duplicate_measure(cfg)} >= {cfg.duplicate_threshold:g}), summed over the pruned "
            "layers; mean ± std over seeds (evaluation batches). " + budget)

# %% [markdown]
# ### What the clusters look like
#
# Activation-maximisation patterns (gradient ascent on the input from noise, with L2 decay, blur and
# jitter) of the dense network's filters in the pruned layers named in the titles, grouped by the clusters that
# functionality-oriented pruning formed (first seed, the figure's ratio): one frame colour per cluster,
# the kept representative framed thick. Largest clusters first. Then the response similarity matrices of
# the same layers, channels ordered by cluster, the multi-filter clusters boxed.

# %%
f = cfg.figures
if f.enabled and f.setting in dense_models:
    setting = cfg.settings[f.setting]
    dense = dense_models[setting.model]
    layer_of = fn.layer_groups(dense, setting, study.example_shape)
    rec = fn.find_record(records, f.setting, "functionality", f.ratio, False, cfg.seeds[0])
    info = rec.summary["groups"]
    bounds = fn.input_bounds(splits)
    for k in f.layers:
        g = layer_of[k]
        fig = fn.am_grid(dense, g, info[g.id]["labels"], info[g.id]["kept"], f.filters, study.input_shape, f.am,
                         bounds, title=f"{setting.model}, layer {k} ({g.id}), r = {f.ratio:g}, seed {rec.seed}: "
                                       f"{info[g.id]['clusters']} clusters of {info[g.id]['channels']} filters")
        _ = save_figure(fig, figures, f"am_grid_layer{k}")
    idx = fn.sample_indices(len(val_images), cfg.method.images, rec.seed)
    sims, _ = fn.group_similarities(dense, [layer_of[k] for k in f.layers], val_images[idx], cfg.method.similarity)
    fig = fn.similarity_figure(sims, {layer_of[k].id: info[layer_of[k].id]["labels"] for k in f.layers},
                               {layer_of[k].id: f"layer {k} ({layer_of[k].id})" for k in f.layers},
                               title=f"{setting.model}: response similarity on seed {rec.seed}'s descriptor batch")
    _ = save_figure(fig, figures, "similarity_matrices")

# %% [markdown]
# ## Claim 2: accuracy without retraining
#
# Test accuracy right after pruning, against the ratio, for every column (mean ± std over seeds; L1 and
# FPGM do not depend on the seed without retraining and ran once). The table adds the accuracy after the
# brief retraining where it ran, and the share of the drop it recovered.

# %%
for name, s in cfg.settings.items():
    if s.enabled:
        fig = fn.accuracy_figure(df, cfg, name, False, dense_acc[s.model],
                                 title=f"{s.model}, layers {s.layers}, profile {ctx.profile}: no retraining")
        _ = save_figure(fig, figures, f"accuracy_vs_ratio_{name}")
paper = paper_numbers("functionality", dataset=ctx.data)
write_table(fn.accuracy_table(cfg, df, dense_acc, paper), tables, "accuracy",
            "Test accuracy (%) without retraining and after the brief retraining, mean ± std over seeds; the paper's "
            "columns as its data file holds them (arXiv:1811.02639; its ratios are not known). " + budget)

# %% [markdown]
# ## Claim 3: what retraining recovers, and the functionality compensation
#
# Accuracy after the same brief retraining (mean ± std over seeds). Then the compensation figure: the
# activation-maximisation patterns of the first kept filters of one pruned layer right after pruning and
# after the retraining, after L1 and after functionality-oriented pruning (same starting noise), and, for
# every pruned layer, how much the retraining changed the kept filters' responses (cosine between the
# two networks' responses on held-out validation images; 1 = unchanged). If retraining rebuilds the
# function of wrongly pruned filters, it should change the kept filters more after L1.

# %%
for name, s in cfg.settings.items():
    if s.enabled and s.retrain_ratios:
        fig = fn.accuracy_figure(df, cfg, name, True, dense_acc[s.model],
                                 title=f"{s.model}, layers {s.layers}, profile {ctx.profile}: after the brief retraining")
        _ = save_figure(fig, figures, f"accuracy_retrained_{name}")
comp, nets = fn.compensation(cfg, records, dense_models, val_images, study.example_shape)
if nets:
    setting = cfg.settings[f.setting]
    fig = fn.compensation_figure(cfg, nets, comp, dense_models[setting.model], study.input_shape, fn.input_bounds(splits),
                                 study.example_shape,
                                 title=f"Functionality compensation, {setting.model}, r = {f.ratio:g}, seed {cfg.seeds[0]}")
    _ = save_figure(fig, figures, "compensation")
gap = fn.compensation_gap(comp)
write_table(fn.compensation_table(cfg, comp), tables, "compensation",
            "Response cosine of the kept filters before vs after the brief retraining, averaged over the pruned "
            "layers (mean ± std over seeds)"
            + (f"; functionality − L1, paired by seed: {gap}" if gap is not None else "") + ". " + budget)

# %% [markdown]
# ## Accuracy against measured latency
#
# The retrained networks, timed at batch 1 on this machine (median), against their test accuracy; the
# dense network as a reference.

# %%
for name, s in cfg.settings.items():
    retrained = [r for r in records if r.tags["setting"] == name and r.tags["retrain"]]
    if retrained:
        ref = dense_ref[s.model]
        fig = accuracy_vs_latency(retrained, title=f"{s.model}, profile {ctx.profile}: after the brief retraining",
                                  dense={"latency_ms": ref.get("batch_1_ms", float("nan")), "test_acc": ref["test_acc"]})
        _ = save_figure(fig, figures, f"accuracy_vs_latency_{name}")

# %%
_ = write_metrics(fn.metrics(ctx.profile, len(records), dense_acc, df, dup, gap), ctx.out_dir)

# %% [markdown]
# ## Assumptions and deviations
#
# Where the reconstruction had to choose (the abstract does not say), where this profile differs from the
# `paper` profile, why, and the effect where this stage measures it.

# %%
write_table(fn.assumptions_table(cfg, resolve_section("functionality", profile="paper"), df, describe_splits(study),
                                 dense_acc),
            tables, "assumptions")

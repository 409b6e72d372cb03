# %% [markdown]
# # One comparison of every method, on equal terms
#
# No paper, library or benchmark compares these six channel-pruning methods on the same network,
# checkpoint, budget and post-pruning training, against a random control, with measured latency.
# Here every registered method (GDP, W-Gates, functionality-oriented pruning, DSA, DAIS, GReg, and
# the baselines L1-norm, random channels, network slimming, FPGM's criterion and a sensitivity-scan
# allocation) prunes **the same dense checkpoint** to **the same MACs targets**; each runs its own
# pruning procedure (its training phases equally long, in SGD steps), then gets **the same
# fine-tuning** and **one selection rule** on the validation split, over the same seeds. Each method
# is compared with L1 and with random channels, paired by seed, by the project's one verdict rule.
# The runs are built by the public API (`prunerep.api.spec_for`, the function behind
# `prunerep.prune`) and executed by the pipeline's runner; a run identical to another stage's
# finished run is reused, not recomputed. Where `latency_arm` is on, W-Gates also runs in its native
# latency mode, driven to the measured latency of L1's networks, and is compared with L1 at equal
# measured latency. What "equal" means for each method, and where it departs from its paper, is in
# the last section.

# %% parameters
profile: str = "default"        # smoke | default | paper (params.yaml `profile`)
section: dict = {}              # resolved `compare` section (empty: read params.yaml)
data: dict = {}                 # resolved `data` section
out_dir: str = "results/compare"  # tables/, figures/, metrics.json go here

# %%
from prunerep.reporting import save_figure, setup_notebook, write_metrics, write_table
from prunerep.reporting.figures import accuracy_vs_latency, accuracy_vs_macs
from prunerep.reporting.notebook import recipe_summary
from prunerep.runner import write_records
from prunerep.studies import compare
from prunerep.studies.base import dense_reference, open_study
from prunerep.studies.latency import provenance_table

ctx = setup_notebook("compare", profile, section, data, out_dir)
cfg = ctx.cfg
study = open_study(ctx, cfg)
tables, figures = ctx.out_dir / "tables", ctx.out_dir / "figures"
recipe_summary(ctx)

# %% [markdown]
# ## Runs
#
# One run per method, MACs target and seed, each a record in `runs.jsonl`. The status table lists
# every method at every target: what ran, and for anything that did not, why ("not implemented":
# no method module for that paper yet; "not run": the method cannot reach the target; "failed": its
# error). Runs go to parallel worker processes (one line each below) and resume after a kill;
# latency is measured afterwards, one network at a time. Then, where `latency_arm` is on, the
# latency arm (its own section below): the latency dataset of this device (reused from the
# per-device cache under `artifacts/latency_dataset/`, or measured now), LPNet, L1's networks timed
# against the dense network, and W-Gates' latency-mode runs at the ratios measured.

# %%
plan = compare.plan(cfg, study)
budget_note = compare.budget_text(cfg, study, plan.specs)
all_records, skipped = compare.run(cfg, study, plan)
latency_arm = compare.run_latency_arm(cfg, study, all_records)     # nothing runs when latency_arm is off
write_records([*all_records, *latency_arm.records], ctx.out_dir / "runs.jsonl")
# every table and figure but the rounding section reads the runs at the plain budgets
records, rounded = compare.split_rounded(all_records)
dense = dense_reference(study, cfg.model)
write_table(compare.runs_table([*all_records, *latency_arm.records]), tables, "runs", "One row per run. " + budget_note)
write_table(compare.status_table(cfg, records, skipped), tables, "status",
            "Every method at every MACs target: ran (n seeds), not implemented, not run, or failed. " + budget_note)

# %% [markdown]
# ## What we found
#
# Test accuracy (mean ± std over seeds) of every method at every MACs target, and each method minus
# L1 and minus random channels, paired by seed (95% t-interval), with the verdict of "more accurate
# than the baseline" by the one rule. The MACs each method actually kept are shown beside the target
# (a uniform rule lands below it; GReg, which never prunes the residual streams, can land well below).

# %%
comparison = compare.comparison_table(records)
write_table(compare.comparison_display(comparison), tables, "comparison",
            compare.verdict_caption() + " " + budget_note)

# %% [markdown]
# ## Accuracy against MACs and against measured latency
#
# One marker per method, one point per MACs target: mean over seeds, ± std on both axes only where
# there is more than one seed. Latency is the median of repeated runs of each pruned network at the
# batch size `latency_batch` on this machine, measured after all runs, one network at a time; the
# star is the dense checkpoint. On these CPUs latency follows the MACs only partly (see the README's
# latency notes), and at batch 1 a small network's time is mostly fixed cost and noise (the wgates
# notebook measures how much), so the default profile plots batch 64; the tables give every batch
# size measured. Where the latency arm ran, W-Gates in latency mode is one more marker.

# %%
title = f"{cfg.model}: test accuracy vs MACs kept, seeds {list(cfg.seeds)}"
saved = save_figure(accuracy_vs_macs(records, title, name=compare.record_name, dense={"test_acc": dense["test_acc"]}),
                    figures, "accuracy_vs_macs")

# %%
b = cfg.latency_batch
title = f"{cfg.model}: test accuracy vs measured latency (batch {b}), seeds {list(cfg.seeds)}"
saved = save_figure(accuracy_vs_latency([*records, *latency_arm.records], title, batch_size=b, name=compare.record_name,
                                        dense={"latency_ms": dense.get(f"batch_{b}_ms"), "test_acc": dense["test_acc"]}),
                    figures, "accuracy_vs_latency")

# %% [markdown]
# ## W-Gates in its latency mode, at L1's measured latency
#
# W-Gates' native budget is a latency, predicted by LPNet from the widths; everywhere above it runs
# in FLOPs mode at the MACs targets. Here (`latency_arm`), at each MACs target, L1's networks are
# timed interleaved with the dense network at `latency_batch` in `latency_arm.sessions` sessions
# (a network's ratio: the median over sessions), and the median (`latency_arm.statistic`) over seeds
# of their latency ratio becomes W-Gates' latency target (`Budget(latency_keep=...)`), with LPNet
# fitted on this device's latency dataset. W-Gates gets the same training phases and fine-tuning as
# in FLOPs mode; afterwards its networks and L1's are timed again in the same sessions.
#
# Equal latency is then checked, not assumed: on a noisy machine a whole session's ratios can move
# together by more than the gaps compared here, and LPNet's prediction can miss W-Gates' networks.
# The latencies count as equal when the 95% interval of W-Gates' ratio minus L1's, paired by seed,
# lies within ±`latency_arm.tolerance` of the dense latency. If they are not equal, W-Gates runs
# again at a new target (after one round: scaled by the measured ratio of L1 to W-Gates; after two:
# the secant through the last two rounds), up to `latency_arm.iterations` rounds (column "rounds").
# The table pairs the round at equal latency, or else the round whose latencies came closest (a
# choice on latency, never on accuracy), and times its networks once more in new sessions: the
# relation (equal, faster, slower) counts only if that re-timing finds it again. The accuracy
# difference, paired by seed, gets the one rule's verdict only at equal latency, or when W-Gates is
# both faster and more accurate (supported) or both slower and less accurate (not supported).
# Otherwise the table says "no verdict: equal latency not established". At a profile where
# `latency_arm.enabled` is false this section says so and nothing runs.

# %%
equal_latency = compare.equal_latency_table(latency_arm, records)
if latency_arm.enabled:
    write_table(compare.equal_latency_display(equal_latency), tables, "equal_latency",
                compare.equal_latency_caption(latency_arm) + " " + budget_note)
    if latency_arm.fit is not None:
        write_table(provenance_table({cfg.model: latency_arm.fit}), tables, "latency_arm_lpnet",
                    "The latency dataset (file, content digest, key, device) the latency arm's LPNet was fitted on.")
else:
    print("W-Gates in latency mode at equal measured latency: not run at this profile "
          "(compare.latency_arm.enabled is false).")

# %% [markdown]
# ## Widths rounded for the hardware
#
# Every method again at `round_targets`, with each pruned width rounded down to a multiple of
# `round_to` after the method (the same rule for all: the channels with the smallest filter L1 norm
# go; W-Gates rounds with its own gate scores first), then the same fine-tuning. Filled: as pruned;
# hollow: rounded; the arrow shows what the rounding bought in measured latency and cost in
# accuracy. Rounding down also lowers the MACs below the target (the table gives both).

# %%
if rounded:
    write_table(compare.rounding_table(records, rounded), tables, "rounding",
                f"As pruned → widths rounded down to multiples of {cfg.round_to} (means over seeds); the accuracy "
                "difference is paired by seed (95% t-interval). " + budget_note)
    title = f"{cfg.model}: widths rounded to multiples of {cfg.round_to}, batch {b}"
    saved = save_figure(compare.rounding_figure(records, rounded, b, title), figures, "rounding")
else:
    print("No rounded arms at this profile (compare.round_to is null).")

# %% [markdown]
# ## Wall time of each method's pruning phase
#
# Everything before the common fine-tuning: preparation, the method's own training phases (gated
# training, search, sparse training, penalty schedule) and surgery, measured inside each run (one
# thread per worker, workers side by side). One-shot methods have no training phase.

# %%
write_table(compare.timing_table(records).drop(columns=["pruning_time_mean"]), tables, "pruning_time",
            "Wall time per run (mean ± std over seeds and targets). " + budget_note)

# %%
saved = save_figure(compare.timing_figure(records, f"{cfg.model}: pruning-phase wall time per run"),
                    figures, "pruning_time")

# %% [markdown]
# ## Kept width per layer
#
# For each MACs target: the share of every channel group each method kept (mean over seeds; the
# number in a cell is the mean kept channels). Columns are the dense network's groups in model
# order, named after their first producer with their dense width; a residual stream (every conv
# adding into one stage's skip path) is one group, marked "stream".

# %%
groups = compare.dense_groups(study, cfg.model)
for t in cfg.targets:
    saved = save_figure(compare.widths_figure(records, groups, t), figures, f"widths_{t:g}")

# %%
write_table(compare.hyper_table(records), tables, "hyper", "Each method's hyper-parameters as run.")
saved = write_metrics({**compare.metrics(cfg, records, comparison, skipped, dense, ctx.profile),
                       **compare.rounding_metrics(records, rounded, cfg.latency_batch),
                       **compare.latency_arm_metrics(latency_arm, equal_latency)}, ctx.out_dir)

# %% [markdown]
# ## Assumptions and deviations
#
# Where this comparison departs from each paper's own protocol, and why; measured effects are
# computed from the runs above.

# %%
write_table(compare.deviations_table(cfg, records, plan.specs), tables, "deviations")

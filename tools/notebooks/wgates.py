# %% [markdown]
# # W-Gates: weight-dependent gates under a measured-latency constraint
#
# Yun Li, Weiqun Wu, Zechun Liu, Chi Zhang, Xiangyu Zhang, Haotian Yao, Baoqun Yin. *Weight-dependent
# Gates for Differentiable Neural Network Pruning*, ECCV 2020 Workshops; journal version *Weight-dependent
# Gates for Network Pruning*, IEEE TCSVT 32 (2022), [arXiv:2007.02066](https://arxiv.org/abs/2007.02066).
# No official code; the paper's tables were not transcribed, so `prunerep.methods.wgates` is a
# reconstruction from the abstracts (every open choice is listed at the end).
#
# **What W-Gates does.** Every filter's keep/prune gate is a learned function of that filter's own
# weights, binary in the forward pass with a straight-through gradient. A latency predict net (LPNet),
# trained offline on latencies measured on the target device, turns the widths the gates leave into a
# predicted latency, so the gates and every layer's pruning ratio are trained under a latency
# constraint; in the journal version the predictor can be switched to FLOPs.
#
# **Claims tested, in the order of the sections below** (`references/claims/wgates.yaml`): (1) LPNet predicts
# the latency of networks it never saw on this machine (Spearman >= 0.95, >= 95% within ±10%) and
# better than two predictors anyone could build, the networks' MACs and a per-layer lookup table;
# (2) networks found under a latency target meet it when measured, within the measured noise;
# (3) at equal measured latency W-Gates is more accurate than uniform pruning and than L1-norm
# pruning; (4) ours, the paper's premise made testable: at equal measured latency the
# latency-constrained search beats the same search constrained by FLOPs. The abstract's ImageNet
# gains (+1.33 / +1.28 / +1.1 top-1) are configured in the `paper` profile, not run here.

# %% parameters
profile: str = "default"        # smoke | default | paper (params.yaml `profile`)
section: dict = {}              # resolved `wgates` section (empty: read params.yaml)
data: dict = {}                 # resolved `data` section
out_dir: str = "results/wgates" # tables/, figures/, metrics.json go here

# %%
import pandas as pd

from prunerep.reporting import save_figure, setup_notebook, write_metrics, write_table
from prunerep.reporting.figures import accuracy_vs_latency, gain_plot
from prunerep.reporting.ledger import write_claims
from prunerep.reporting.notebook import recipe_summary, show_verdicts
from prunerep.runner import execute, write_records
from prunerep.studies import wgates
from prunerep.studies.base import dense_reference, describe_splits, open_study

ctx = setup_notebook("wgates", profile, section, data, out_dir)
cfg = ctx.cfg
study = open_study(ctx, cfg)
tables, figures = ctx.out_dir / "tables", ctx.out_dir / "figures"
budget = wgates.describe_budget(cfg, len(study.splits.train), ctx.profile) + " " + describe_splits(study) + "."
batch = cfg.latency_batch
recipe_summary(ctx)

# %% [markdown]
# ## The runs
#
# The latency datasets are measured on this machine the first time this notebook runs on it,
# serially, before any run (progress in `artifacts/wgates/logs/latency_dataset.log`), and reused
# afterwards: they are a cache under `artifacts/latency_dataset/` keyed by the device fingerprint
# and the measurement settings, and a corrupt file or one of another device is refused. The
# tables below name the device and the digest of the file every predictor was fitted on. LPNet is
# fitted here, once per held-out split; the runs use the LPNet of the first split. Independent runs
# go to `workers` processes; every run is one record in `runs.jsonl`. After all runs, every final
# network is measured again, interleaved with its dense network.

# %%
datasets = wgates.ensure_datasets(cfg, study.example_shape, study.load_dense, log=wgates.DATASET_LOG)
fits = {model: wgates.fit_predictors(cfg, ds, model) for model, ds in datasets.items()}
specs, targets = wgates.plan(cfg, datasets, fits)
results = execute(specs, study)
write_records(results, ctx.out_dir / "runs.jsonl")
final = wgates.measure_final(results, study, cfg)
_ = write_table(final, tables, "final_latency", f"Every final network measured after all runs, interleaved with "
                f"its dense network (ratio = median over rounds of its time / the dense time). {budget}")

# %% [markdown]
# ## What we found
#
# One row per claim and setting, judged from the records above by the project's one rule.

# %%
claims = write_claims("wgates", wgates.evidence(cfg, fits, final, results, datasets, budget), ctx.out_dir)
show_verdicts(claims)

# %% [markdown]
# ## Claim 1: LPNet on networks it never saw
#
# How each dataset was measured: the networks by kind (uniform grid, per-stage and per-layer random
# widths, other methods' final networks if `dataset.given_from` asks for them), the time it took,
# and how noisy repeats are (a second measurement of some networks at the end of the build, and the
# dense network's drift over the build).

# %%
write_table(wgates.dataset_table(datasets, batch), tables, "latency_dataset",
            f"The latency datasets, measured on this device (time and noise as recorded in each file). {budget}")

# %% [markdown]
# The measurements every predictor below was fitted on: the dataset file, the digest of its content,
# its key, and the fingerprint of the device it was measured on.

# %%
write_table(wgates.provenance_table(fits), tables, "latency_provenance",
            "Which dataset file (content digest, key) and which device every latency predictor was fitted on.")

# %% [markdown]
# Per held-out split (`predictor.seeds`), a random share `predictor.test_share` (at least a fifth) of
# the sampled networks is held out; LPNet trains on the rest (its stopping point chosen on a further
# `predictor.val_share`), the two alternatives fit two
# numbers each (`a·x + b`, relative least squares) on the same non-held-out networks. Other
# methods' networks are never fitted on and are scored apart.

# %%
write_table(wgates.predictor_table(fits, cfg.predictor.tolerance), tables, "predictors",
            f"Latency predictors on held-out networks, mean ± std over splits. {budget}")

# %%
for model, fit in fits.items():
    for b in datasets[model].batch_sizes:
        save_figure(wgates.scatter_figure(fit, b, cfg.predictor.tolerance), figures, f"lpnet_scatter_{model}_b{b}")

# %% [markdown]
# ## Claim 2: the latency target, measured
#
# LPNet's prediction is what W-Gates trains against; whether the network meets the target is
# decided by measuring it. The allowance is the dataset's repeat noise (90th percentile of how far a
# second measurement of the same network lands from the first).

# %%
write_table(wgates.target_table(results, final, datasets, batch), tables, "claim2_targets",
            f"Claim 2: W-Gates networks under a latency target at batch {batch}, predicted and measured. {budget}")

# %% [markdown]
# ## Claims 3 and 4: accuracy at equal measured latency
#
# Each latency target maps to the MACs of the largest uniform network the dataset measured at or
# below it; uniform pruning (random channels), L1-norm pruning and W-Gates in FLOPs mode get that
# MACs budget, W-Gates in latency mode the latency target itself. Same dense checkpoint, same seeds,
# same total training (the one-shot arms fine-tune for W-Gates' search plus fine-tuning epochs);
# the measured latency of every arm is shown beside its accuracy.

# %%
write_table(pd.DataFrame(targets), tables, "targets",
            "Latency targets and the MACs budget each maps to (the largest uniform network at or below it).")

# %%
write_table(wgates.accuracy_table(results, final, batch), tables, "accuracy",
            f"Test accuracy, measured latency (batch {batch}, fraction of dense) and MACs of every arm. {budget}")

# %%
comparison = wgates.comparison_table(results, final, batch)
save_figure(gain_plot(wgates.gain_rows(comparison), "comparison", title="W-Gates (latency target) minus each arm, "
                      "paired by seed", xlabel="setting and arm", ylabel="test accuracy gain (points)"),
            figures, "claims34_gain")
write_table(comparison[[c for c in comparison.columns if not c.startswith("_")]], tables, "claims34_comparisons",
            f"Claims 3-4: paired differences of test accuracy (95% t-interval). {budget}")

# %% [markdown]
# Where each search spends its budget: kept fraction of every channel group (residual streams are one
# group each), under the latency target and under the FLOPs target, with L1's uniform widths.

# %%
widths = wgates.widths_frame(results, datasets)
if len(widths):
    for model, target in widths[["model", "target"]].drop_duplicates().itertuples(index=False):
        save_figure(wgates.widths_figure(widths, model, target, wgates.arm_names(results)), figures,
                    f"widths_{model}_t{target:g}")
    _ = write_table(widths, tables, "widths", "Final widths per channel group and run.")

# %% [markdown]
# ## Accuracy vs measured latency
#
# Test accuracy of the final networks against their latency at the batch size of the latency
# targets (`latency_batch`) as the runner measured it (one network at a time, median), with the
# dense network as a reference.

# %%
for model in dict.fromkeys(r.model for r in results):
    dense = dense_reference(study, model)
    recs = [r for r in results if r.model == model]
    save_figure(accuracy_vs_latency(recs, f"{model}: test accuracy vs latency at batch {batch} (profile {ctx.profile})",
                                    dense={"latency_ms": dense.get(f"batch_{batch}_ms", float("nan")),
                                           "test_acc": dense["test_acc"]}, batch_size=batch,
                                    name=lambda r: wgates.arm_name(r.tags.get("arm"), r.hyper) if r.tags.get("arm") else r.label),
                figures, f"accuracy_vs_latency_{model}")

# %% [markdown]
# ## ImageNet configurations
#
# The paper's ImageNet networks, as configured in the `paper` profile (they need ImageNet, a latency
# dataset of each network on the target device, and a GPU; not run by this pipeline).

# %%
write_table(wgates.large_scale_table(cfg), tables, "imagenet_configs", "ImageNet settings configured (not run here).")

# %%
_ = write_metrics(wgates.headline_metrics(ctx.profile, fits, results, final, claims, batch), ctx.out_dir)

# %% [markdown]
# ## Assumptions and deviations
#
# | | the paper's | ours | why | measured effect |
# |---|---|---|---|---|
# | gate generator | a per-layer module from each filter's weights to a binary gate (form not retrieved) | per channel group: producers' filters divided by their layer's std and concatenated, `Linear(D, hidden) -> ReLU -> Linear(hidden, 1)`, scores standardised over the group plus a learned per-group offset `t_g` | the offset is the layer's learned pruning ratio, the standardised score ranks the filters; without standardisation the initial scores barely differ and a group's channels close together | — |
# | straight-through gradient | STE (form not retrieved) | identity; the best-scored channel of a group always stays open | the usual STE; no group dies | — |
# | efficiency term | loss on LPNet's prediction (form not retrieved) | `lambda * max(0, log(E / E_dense) - log(target))`, `lambda` ramped geometrically | zero once the target is met, scale-free | claim 2 |
# | end of the search | fix the gates, remove, fine-tune | gates fixed at the first step the hard network meets the target (`method.freeze_on_target`), at the latest after `freeze_at` of the gated training; if still above the target the lowest-scored open channels close until the predictor meets it (`forced closures`), if below it the best-scored closed channels reopen while it stays met (`reopened`); the weights train on with the fixed gates | every arm uses its whole budget; the network kept is the one the weights adapt to | claim 2 table |
# | gate generator initialisation | not retrieved | `method.generator_init` l1 (ours): before the gated training each generator is fitted alone (100 Adam steps on its own filters, no data) so that its standardised scores rank the filters by L1 norm; the task loss then refines the ranking | chosen on the validation split with `benchmarks/wgates_calibration.py` (ResNet-20 retrained on the machine that reran this stage, FLOPs mode, seeds 10 and 11: seeds no stage reports; static figures from that command, 2026-12-06). With PyTorch's default init the generator ranks the filters at random at step 0, and in the default profile's ~60 gated steps the task loss barely teaches it (validation accuracy after fine-tuning at 0.4 of the MACs, seed 10: 54.8 % random init, 62.0 % L1 init; L1-norm pruning at the same MACs and training 70.2 %). With L1 init, the other knobs within noise at seed 10 (lr scale 1: 62.6; floor 0.5: 62.6) and no floor collapsed the residual streams (43.4). Equal pressure per group with L1 init reached 70.8 / 69.4 % (seeds 10 / 11; L1 70.2 / 70.0), because it shrinks every group alike: it is L1-norm pruning with uniform widths, not a cost-aware search, so it was not chosen (claim 4 tests the cost-aware allocation) | the accuracy tables; `init_fit` in every run's summary: the fit's Spearman with the L1 norms per group |
# | gate training hyper-parameters | not retrieved | `method.gate_lr_scale` 10, `method.lam_max` 10, `method.freeze_on_target` true, `method.min_keep` 0.33 (a per-group floor, ours), `method.pressure` cost | chosen on the validation split with `benchmarks/wgates_calibration.py` (ResNet-20, FLOPs mode, 0.4 of the MACs, seed 10: a setting no stage reports) out of 26 candidates; validation accuracy after fine-tuning, static figures from that command (2026-12-02; L1-norm at the same MACs and training: 67.4 %). With the gates fixed only after 75 % of the phase, the efficiency hinge drove every residual stream to one channel within ~40 steps and the network trained at chance: 20.6-38.6 % (6 candidates). Fixing the gates when the target is first met: 37.4-51.4 %; the best of these (lr scale 1, lambda 1) moved the gates so slowly that none closed before the 75 % freeze, whose forced closures then did all the pruning (the previous default run). The hinge pushes each group's offset by its share of the cost, so the residual streams (read by several convs) are cut first. Two remedies of ours were tried: a per-group floor `min_keep` (0.25: 43.0-54.8; 0.33: 55.8-57.0; 0.4: 56.4; 0.5: 54.4-59.2) and `pressure: relative`, every offset pushed alike (55.6-60.6, but 46.2 at lr scale 10). Chosen: the best candidate that keeps the paper's cost-aware (LPNet-driven) allocation and leaves the search room at every target the stages report (a floor of 0.5 costs ~0.25 of the MACs when every group sits on it, about the 0.26 the latency targets come to): floor 0.33, lr scale 10, lambda 10 (57.0 %). Relative pressure scored 60.6 % but removes the per-group latency signal that claim 4 tests, and floor 0.5 59.2 %; one seed, 500 validation images (standard error ~2.2 points): these differences are within noise. This rule was written after the first candidates were seen. If the floors alone cost more than a target, the budget wins (channels close below them, counted as `floor_breaks`) | the accuracy tables; the more of a group the floor keeps, the closer W-Gates gets to uniform widths: the per-group widths figure shows how far the search moves from them |
# | LPNet | an MLP on per-layer widths, its size and data not retrieved | `predictor.lpnet` hidden layers (SiLU), widths as fractions of dense, log latency at every measured batch size, Adam full batch, stopping point chosen on a validation split; `predictor.test_share` held out per split | smooth in its input for the penalty's gradient; log targets make the error relative | claim 1 |
# | latency dataset | measured on the target hardware (size not retrieved) | uniform grid, per-stage and per-layer random widths (other methods' networks only if `dataset.given_from` names them: off); `dataset.measure` batch sizes, chunks timed in interleaved rounds with the dense network, median | what the issue asks; interleaving spreads drift over every network | noise columns of the dataset table |
# | alternatives to LPNet | — | MACs and a per-layer lookup table (every conv/linear alone on a grid of widths, interpolated), each `a·x + b` on the training networks | the two predictors anyone could build; the intercept absorbs fixed costs | claim 1 |
# | baselines | uniform and other pruned networks at lower latency (not named) | uniform widths with random channels, and L1-norm filter pruning, at the MACs of the largest uniform network measured at or below the target; W-Gates in FLOPs mode at the same MACs | equal latency through the measured uniform curve | the measured latency of every arm is in the tables |
# | training | ImageNet recipes not retrieved | CPU profile: short search and fine-tuning on a training subset; the one-shot arms fine-tune as long as W-Gates trains in all | equal total training per arm | recipe table |
# | latency batch | the target device's (batch 1 on phones) | `latency_batch`: 64 in the default profile, 1 in the smoke and paper profiles | on this 2-core VM a CIFAR network's batch-1 time is mostly fixed per-layer cost and noise: see the repeat noise and drift of both batch sizes in the latency-dataset table and LPNet's batch-1 rows in the predictor table (both regenerated by this stage). The first default run targeted batch 1 (static figures from that run, commit 64fbddf: `git show 64fbddf:results/wgates/tables/accuracy.md`): the largest uniform ResNet-20 at 0.6 of the dense batch-1 time kept 11 % of the MACs and every arm ended below 45 % accuracy. Chosen from the latency dataset and that first run's accuracy regime, not from comparing the arms | both batch sizes are measured for every final network |
# | width rounding | hardware-friendly widths | off for the CIFAR networks (narrow groups); multiples of 8 in the paper profile's ImageNet settings (`method.round_to`) | a multiple of 8 is a large step in a 16-channel group | — |
# | networks | ImageNet ResNet-34/50, MobileNet-V2 | CIFAR networks of `models` for accuracy (default profile: ResNet-20 and ResNet-56), of `dataset.models` for LPNet; ImageNet settings configured only | CPU budget | — |

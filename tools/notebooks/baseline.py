# %% [markdown]
# # Dense baselines: the checkpoints every method prunes
#
# Every paper notebook prunes **the same dense checkpoint** produced by the `pretrain` stage
# (`artifacts/pretrain/<model>/model.pt`): that is what makes the six methods comparable. This
# notebook reports those checkpoints: test accuracy re-measured from the saved file, cost in the
# project's one FLOPs convention (**MACs of conv + linear layers**; params of conv/linear/BN),
# measured latency on this machine, and the training curves.
#
# The checkpoint was selected on the **validation split** (5,000 images held out of the training
# set); the test split is only reported.

# %% parameters
profile: str = "default"            # smoke | default | paper (params.yaml `profile`)
section: dict = {}                  # resolved `baseline` section (empty: read params.yaml)
data: dict = {}                     # resolved `data` section
out_dir: str = "results/baseline"   # tables/, figures/, metrics.json go here

# %%
import pandas as pd

from prunerep.io import read_json
from prunerep.reporting import save_figure, setup_notebook, write_metrics, write_table
from prunerep.reporting.figures import training_curves
from prunerep.reporting.paper import dense_reference
from prunerep.stages.baseline import dense_report

ctx = setup_notebook("baseline", profile, section, data, out_dir)
cfg = ctx.cfg
print(ctx.describe())
cfg

# %% [markdown]
# ## Dense models: accuracy, cost, latency

# %%
rows = dense_report(cfg, ctx.data, ctx.profile)
for r in rows:
    r.update(dense_reference(r["model"]))  # the paper's printed dense accuracy, labelled as such
table = pd.DataFrame(rows)
caption = (f"Dense baselines, profile `{ctx.profile}` (budget: epochs and training images per row). "
           "MACs = multiply-accumulates of conv+linear layers at 1x3x32x32. Latency: median forward "
           "time on this machine. Data: CIFAR-10 as given by `data.source` (see its fingerprint in "
           "metrics.json); the paper column is the paper's own baseline, on the original CIFAR-10.")
write_table(table, ctx.out_dir / "tables", "dense_models", caption)
table

# %% [markdown]
# ## Training curves (validation accuracy chose the checkpoint)

# %%
histories = {key: read_json(f"results/pretrain/{key}/history.json") for key in cfg.models}
fig = training_curves(histories, title=f"Dense pretraining, profile {ctx.profile}")
save_figure(fig, ctx.out_dir / "figures", "training_curves")

# %%
write_metrics({"profile": ctx.profile,
               "models": {r["model"]: {k: v for k, v in r.items() if k != "model"} for r in rows}},
              ctx.out_dir)

# %% [markdown]
# ## Assumptions and deviations
#
# - **Budget.** The `default` profile trains each model for a few epochs on a 2-core CPU
#   (one-cycle learning rate, label smoothing 0.1) instead of the papers' 160-200 GPU epochs, so
#   its accuracy sits several points below the papers' baselines. The `paper` profile holds
#   GReg's recipe (200 epochs, lr 0.1, x0.1 at epochs 100 and 150, weight decay 5e-4).
# - **Data.** The offline copy of CIFAR-10 used here was re-encoded as JPEG (quality ~75), so
#   accuracies may sit somewhat below those on the original `cifar-10-python.tar.gz`.
# - **Selection.** The checkpoint is chosen on a 5,000-image validation split held out of the
#   50,000 training images (the papers train on all 50,000 and often quote the best test epoch).
# - **Cost convention.** MACs of conv and linear layers; the option-A shortcut's channel copy is
#   not counted (it is a copy, not arithmetic), which reproduces the published 125.49M MACs of
#   ResNet-56.

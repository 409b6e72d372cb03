# %% [markdown]
# # Dense baselines: the checkpoints every method prunes
#
# Every paper notebook prunes **the same dense checkpoint** produced by the `pretrain` stage
# (`artifacts/pretrain/<model>/model.pt`): that is what makes the six methods comparable. This
# notebook reports those checkpoints: test accuracy re-measured from the saved file, cost in the
# project's one FLOPs convention (**MACs of conv + linear layers**; params of conv/linear/BN),
# measured latency on this machine, and the training curves.
#
# The checkpoint was selected on the **validation split** (`data.val_size` images held out of the
# training set); the test split is only reported. Everything about the data (name, copy, channels,
# image size, classes, split sizes) is read from the data and printed below; costs are counted at
# its own input shape.

# %% parameters
profile: str = "default"            # smoke | default | paper (params.yaml `profile`)
section: dict = {}                  # resolved `baseline` section (empty: read params.yaml)
data: dict = {}                     # resolved `data` section
out_dir: str = "results/baseline"   # tables/, figures/, metrics.json, run.json go here

# %%
import pandas as pd

from prunerep.data import describe_data, example_shape, format_shape, load_data
from prunerep.io import read_json, write_json
from prunerep.reporting import (
    recipe_summary,
    save_figure,
    setup_notebook,
    write_metrics,
    write_table,
)
from prunerep.reporting.figures import training_curves
from prunerep.reporting.paper import dense_reference
from prunerep.stages.baseline import dense_report

ctx = setup_notebook("baseline", profile, section, data, out_dir)
cfg = ctx.cfg
splits = load_data(ctx.data, cfg.subset)
data_line = describe_data(ctx.data, splits)   # e.g. "CIFAR-10 (JPEG image folder at ...), 3x32x32, ..."
example = format_shape(example_shape(splits))  # the input every model is counted and timed at
print(f"Data: {data_line}")
recipe_summary(ctx)

# %% [markdown]
# ## Dense models: accuracy, cost, latency

# %%
rows = dense_report(cfg, ctx.data, ctx.profile, splits=splits)
for r in rows:
    # the paper's printed dense accuracy, labelled as such; "n/a (paper reports ...)" on another dataset
    r.update(dense_reference(r["model"], dataset=ctx.data))
shown = [r for r in rows if not str(r["paper_test_acc"]).startswith("n/a")]
paper_note = ("The paper column is each paper's own dense baseline, on the original dataset, "
              "with its own recipe." if shown else
              "No paper number: the papers' dense baselines of these models are on another "
              "dataset (the paper column says which).")
# Units in the headers (of the CSV too, which keeps the raw values).
units = {"test_acc": "test acc (%)", "test_images": "test images", "val_acc": "val acc (%)",
         "macs_M": "MACs (M)", "params_M": "params (M)", "epochs": "epochs",
         "train_images": "train images", "train_time_min": "train time (min)",
         "paper_test_acc": "paper's test acc (%)", "paper_source": "paper's source"}
units.update({k: f"latency, batch {k[len('latency_bs'):-len('_ms')]} (ms)" for k in rows[0]
              if k.startswith("latency_bs")})
table = pd.DataFrame(rows).rename(columns=units)
caption = (f"Dense baselines, profile `{ctx.profile}` (budget: epochs and training images per row). "
           f"Data: {data_line} (fingerprint in run.json). MACs = multiply-accumulates of "
           f"conv+linear layers at {example}. Latency: median forward time on this machine. "
           + paper_note)
write_table(table, ctx.out_dir / "tables", "dense_models", caption)

# %% [markdown]
# ## Training curves (validation accuracy chose the checkpoint)

# %%
histories = {key: read_json(f"results/pretrain/{key}/history.json") for key in cfg.models}
fig = training_curves(histories, title=f"Dense pretraining, profile {ctx.profile}")
figure_path = save_figure(fig, ctx.out_dir / "figures", "training_curves")  # the figure shows below

# %%
# The full record (data description with its fingerprint, the input shape, every row) beside the
# headline scalars that `dvc metrics show` reads.
write_json({"profile": ctx.profile, "input": example, "data": splits.describe(), "rows": rows},
           ctx.out_dir / "run.json")
metrics_path = write_metrics({"profile": ctx.profile,
                              **{f"{r['model']}/{k}": r[k] for r in rows
                                 for k in ("test_acc", "macs_M", "params_M", "latency_bs1_ms",
                                           "latency_bs64_ms") if k in r}},
                             ctx.out_dir)

# %% [markdown]
# ## Assumptions and deviations
#
# | | the papers | ours | why | measured effect |
# |---|---|---|---|---|
# | Training budget | 160-200 epochs on GPUs | the profile's epochs (per row above); `default`: a few epochs on a 2-core CPU, one-cycle learning rate, label smoothing 0.1; the `paper` profile holds GReg's recipe (200 epochs, lr 0.1, x0.1 at 100 and 150, weight decay 5e-4) | CPU budget | the gap between the test accuracy and the paper's column above |
# | Data | the original CIFAR-10 | the copy `data.source` points at (data line above); the committed source is a JPEG re-encoding (quality ~75) of CIFAR-10 | the offline copy of this project's machines | not measured |
# | Checkpoint selection | the whole training set; often the best test epoch | the best epoch on a validation split held out of the training images (`data.val_size`) | the test split is only reported | not measured |
# | Cost convention | each paper its own | MACs of conv and linear layers; the option-A shortcut's channel copy is not counted | it is a copy, not arithmetic; gives the published 125.49M MACs of ResNet-56 | none on accuracy |
#
# A paper's dense accuracy is shown only when `data.dataset` is the paper's dataset.

"""`RunRecord`: the one shape every study's runs are reported in (one JSON line per run).

Every table and figure of a notebook is built from records; the comparison across papers reads
the same records. A record holds what a reader needs to judge the run: the budget asked for and
met, the widths, accuracies (and which rule chose the weights), times, the measured latency of
the pruned network, and what produced it (profile, data fingerprint, code, input digests).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunerep.io import atomic_write_text

__all__ = ["RunRecord", "read_records", "write_records"]


@dataclass(frozen=True)
class RunRecord:
    """One pruning run, as written to ``results/<slug>/runs.jsonl``.

    Attributes:
        slug: the study (params section / notebook) that planned it.
        label: the row label shown in tables, e.g. ``"gdp@0.5"``; says what ran.
        method: registered method slug (``gdp``, ``l1``, ``iterative_l1`` ...).
        model: pretrain.models key of the dense checkpoint it pruned.
        seed: the run's seed.
        tags: the study's coordinates of the run (table, setting, variant, target ...).
        hyper: the method's resolved hyper-parameters.
        budget: ``describe`` (text), ``macs_keep`` (target fraction, or None for fixed ratios).
        dense_macs, dense_params, macs, params: cost of the dense and the pruned network.
        widths: kept channels per dense channel group (0: removed).
        val_acc, test_acc: of the reported weights (after fine-tuning, if any), in %.
        val_acc_before_finetune, test_acc_before_finetune: right after surgery.
        selection: how the reported weights were chosen (``best_val``: the fine-tuning epoch with
            the best validation accuracy; ``last``: the last weights; never the test split).
        phase_time_s: wall time of each phase (prepare, the method's phases, surgery, finetune).
        wall_time_s: wall time of the whole run in its worker (data loading and evaluations too).
        process_time_s: CPU time of the whole run's process work.
        latency: measured latency of the pruned network (``batch_<n>_ms`` medians, threads,
            device fingerprint); None when not measured.
        summary: method-specific outcomes (stop iteration, traces, gate snapshots ...).
        histories: per-phase training curves (epoch, loss, accuracies).
        provenance: profile, data fingerprint, code version, digest of the dense checkpoint,
            the run identity.
        model_path: where the pruned network was saved (architecture + state dict), or None.
    """

    slug: str
    label: str
    method: str
    model: str
    seed: int
    budget: dict[str, Any]
    dense_macs: int
    dense_params: int
    macs: int
    params: int
    widths: dict[str, int]
    val_acc: float
    test_acc: float
    val_acc_before_finetune: float
    test_acc_before_finetune: float
    selection: str
    phase_time_s: dict[str, float]
    tags: dict[str, Any] = field(default_factory=dict)
    hyper: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float | None = None
    process_time_s: float | None = None
    latency: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    model_path: str | None = None

    # -- derived quantities (never stored twice) -------------------------------------------------

    @property
    def macs_keep(self) -> float:
        """Fraction of the dense MACs the pruned network keeps."""
        return self.macs / self.dense_macs

    @property
    def params_keep(self) -> float:
        return self.params / self.dense_params

    @property
    def speedup(self) -> float:
        """Theoretical speed-up from MACs (dense MACs / pruned MACs), not a measured one."""
        return self.dense_macs / self.macs

    @property
    def target(self) -> float | None:
        """The MACs fraction asked for (None for fixed per-layer ratios)."""
        return self.budget.get("macs_keep")

    @property
    def pruning_time_s(self) -> float:
        """Wall time of everything before fine-tuning (prepare, the method's phases, surgery)."""
        return sum(v for k, v in self.phase_time_s.items() if k != "finetune")

    @property
    def finetune_time_s(self) -> float:
        return self.phase_time_s.get("finetune", 0.0)

    @property
    def total_time_s(self) -> float:
        return sum(self.phase_time_s.values())

    def latency_ms(self, batch_size: int) -> float | None:
        """Median measured latency at `batch_size` (None when not measured)."""
        if not self.latency:
            return None
        return self.latency.get(f"batch_{batch_size}_ms")

    def row(self) -> dict[str, Any]:
        """Flat scalars for tables (no widths, histories or summaries)."""
        row = {"label": self.label, "method": self.method, "model": self.model, "seed": self.seed,
               **{k: v for k, v in self.tags.items() if not isinstance(v, dict | list)},
               "macs_keep": self.macs_keep, "params_keep": self.params_keep, "speedup_macs": self.speedup,
               "test_acc": self.test_acc, "val_acc": self.val_acc,
               "test_acc_before_finetune": self.test_acc_before_finetune,
               "val_acc_before_finetune": self.val_acc_before_finetune, "selection": self.selection,
               "pruning_time_s": self.pruning_time_s, "finetune_time_s": self.finetune_time_s}
        for key, value in (self.latency or {}).items():
            if key.startswith("batch_"):
                row[f"latency_{key}"] = value
        return row

    # -- JSON ---------------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=_plain, allow_nan=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"run record: unknown keys {sorted(unknown)} (written by another version?)")
        return cls(**dict(data))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def write_records(records: Iterable[RunRecord], path: str | Path) -> Path:
    """Write records as JSON lines, atomically (a half-written file is never left)."""
    text = "".join(r.to_json() + "\n" for r in records)
    return atomic_write_text(text, Path(path))


def read_records(path: str | Path) -> list[RunRecord]:
    """Records of a ``runs.jsonl`` file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no run records; run the study's stage (dvc repro <slug>) first")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                out.append(RunRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as err:
                raise ValueError(f"{path}:{i}: not a run record ({err})") from err
    return out


def select(records: Sequence[RunRecord], **match: Any) -> list[RunRecord]:
    """Records whose attributes or tags equal every `match` value (e.g. ``model="resnet56"``)."""
    out = []
    for r in records:
        ok = True
        for key, want in match.items():
            have = getattr(r, key) if hasattr(r, key) else r.tags.get(key)
            if have != want:
                ok = False
                break
        if ok:
            out.append(r)
    return out

"""Valid params resolve to exactly the configs they resolved to before: every section of the
committed params.yaml, at every profile, against digests recorded from the code of the commit
before the bad-input checks (issue #15) were added. A check may refuse bad input; it must never
change what good input means.

The digests are valid for one params.yaml (its sha256 is recorded). After an intended change of
params.yaml or of a section's defaults: ``ACCEPT=1 pytest tests/unit/test_params_resolution.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from prunerep.config import PROFILES, read_params, registered_sections, resolve_section, to_dict

ROOT = Path(__file__).resolve().parents[2]
RECORD = Path(__file__).with_name("params_resolution.json")


def _digest(cfg: object) -> str:
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True, default=repr).encode()).hexdigest()[:16]


def _raw(params: dict, name: str) -> str:
    return hashlib.sha256(json.dumps(params.get(name), sort_keys=True, default=repr).encode()).hexdigest()[:16]


def test_every_section_resolves_as_recorded() -> None:
    """Per section: while its YAML is unchanged, it resolves (at every profile) as recorded. A
    section whose YAML was edited on purpose, or a new one, is re-recorded with ACCEPT=1."""
    params = read_params(ROOT / "params.yaml")
    now = {name: {"raw": _raw(params, name),
                  "resolved": {prof: _digest(resolve_section(name, params, profile=prof)) for prof in PROFILES}}
           for name in sorted(registered_sections())}
    if os.environ.get("ACCEPT") == "1":
        RECORD.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    record = json.loads(RECORD.read_text())
    compared = [n for n in now if n in record and record[n]["raw"] == now[n]["raw"]]
    assert len(compared) >= len(record) - 1, (
        f"most recorded sections' YAML changed ({sorted(set(record) - set(compared))}): re-record with ACCEPT=1 "
        "after checking that the code did not change what any section resolves to")
    changed = [n for n in compared if now[n]["resolved"] != record[n]["resolved"]]
    assert not changed, f"these sections now resolve to other configs although their YAML is unchanged: {changed}"

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

import pytest

from prunerep.config import PROFILES, read_params, registered_sections, resolve_section, to_dict

ROOT = Path(__file__).resolve().parents[2]
RECORD = Path(__file__).with_name("params_resolution.json")


def _digest(cfg: object) -> str:
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True, default=repr).encode()).hexdigest()[:16]


def test_every_section_resolves_as_recorded() -> None:
    params_sha = hashlib.sha256((ROOT / "params.yaml").read_bytes()).hexdigest()
    params = read_params(ROOT / "params.yaml")
    now = {f"{name}@{prof}": _digest(resolve_section(name, params, profile=prof))
           for name in sorted(registered_sections()) for prof in PROFILES}
    if os.environ.get("ACCEPT") == "1":
        RECORD.write_text(json.dumps({"params_sha256": params_sha, "resolved_sha256": dict(sorted(now.items()))},
                                     indent=1) + "\n")
    record = json.loads(RECORD.read_text())
    if record["params_sha256"] != params_sha:
        pytest.skip("params.yaml changed since the digests were recorded; re-record them with ACCEPT=1 "
                    "(after checking that the code did not change what any section resolves to)")
    changed = sorted(k for k in now.keys() | record["resolved_sha256"].keys()
                     if now.get(k) != record["resolved_sha256"].get(k))
    assert not changed, f"these sections now resolve to other configs: {changed}"

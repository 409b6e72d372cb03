"""params.yaml: one section per stage, one profile switch, strict validation.

Layout of params.yaml::

    profile: default          # smoke | default | paper: selects every section's profile block
    data: {...}               # DataConfig
    pretrain:                 # a section: shared keys ...
      arch: resnet56
      profiles:               # ... plus per-profile overrides, deep-merged over the shared keys
        smoke: {epochs: 1}
        default: {epochs: 8}
        paper: {epochs: 200}

`resolve_section` merges the shared keys with the active profile's block and turns the result
into the section's frozen dataclass. Unknown keys and wrong types raise one `ConfigError` that
names the key path and the fix, before any work starts.

Command line::

    python -m prunerep.config check              # validate every section of params.yaml
    python -m prunerep.config set-profile smoke  # rewrite the `profile:` line
    python -m prunerep.config show greg          # print a resolved section as YAML
    python -m prunerep.config inputs greg --out results/inputs/greg.json   # what a stage reads

`inputs` writes the part of params.yaml one stage reads, resolved (see `stage_inputs`). The
pipeline's stages depend on that file instead of on whole params sections, so an edit to a
profile a stage does not run (e.g. `gdp.profiles.smoke` while `default` is active) does not make
its results stale.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

PROFILES = ("smoke", "default", "paper")
DEFAULT_PARAMS = Path("params.yaml")
#: The papers' recipes: every notebook's recipe table compares the active profile with this one.
REFERENCE_PROFILE = "paper"

T = TypeVar("T")


class ConfigError(ValueError):
    """A params.yaml problem; the message names the key and says how to fix it."""


# Sections are registered by the modules that own them (data, stages, studies), so the schema
# lives next to the code that reads it. They are discovered by importing every module of the
# packages below: this module names no client.
_SECTIONS: dict[str, type] = {}


def register_section(name: str):
    """Class decorator: declare `cls` as the schema of params.yaml section `name`."""

    def deco(cls: type[T]) -> type[T]:
        if name in _SECTIONS and _SECTIONS[name] is not cls:
            raise ValueError(f"params section {name!r} is registered twice")
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"section {name!r}: {cls.__name__} must be a dataclass")
        _SECTIONS[name] = cls
        return cls

    return deco


SECTION_PACKAGES = ("prunerep.data", "prunerep.stages", "prunerep.studies")

#: A check across sections: ``check(resolved, profile, active)`` gets every section of `profile`
#: resolved (section name -> config) and raises ConfigError; `active` is true for the profile
#: that will run (checks that depend on this machine, e.g. its devices, run only then).
Check = Callable[[Mapping[str, Any], str, bool], None]
_CHECKS: list[Check] = []


def register_check(fn: Check) -> Check:
    """Decorator: run `fn` in `check_params` (`config check`, and before every stage) once every
    section of a profile has resolved. Registered by the module that owns the section a check
    protects (e.g. a paper's model keys against ``pretrain.models``, in the pretrain stage)."""
    if fn not in _CHECKS:
        _CHECKS.append(fn)
    return fn


def registered_sections() -> dict[str, type]:
    """All section schemas (discovered by importing every module of `SECTION_PACKAGES`)."""
    import importlib
    import pkgutil

    for name in SECTION_PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.iter_modules(package.__path__, f"{name}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    return dict(_SECTIONS)


# ---------------------------------------------------------------------------------------------
# dict -> dataclass with type checks


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _suggest(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against type hint `tp`; return the converted value or raise ConfigError."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _convert(value, option, path)
            except ConfigError as err:
                errors.append(str(err))
        if value is None:
            raise ConfigError(f"{path}: may not be null.")
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} fits none of {_type_name(tp)}.")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path}: {value!r} is not one of {list(choices)}.")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # already typed (e.g. a study passing its section's OptimConfig)
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {type(value).__name__}.")
        return from_dict(tp, value, path)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}.")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}.")
            items = [_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}.")
        args = get_args(tp)
        val_tp = args[1] if args else Any
        return {str(k): _convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}.")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {value!r} ({type(value).__name__}).")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads `5e-4` (no dot) as a string: accept numeric strings for float keys.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {value!r} ({type(value).__name__}).")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r} ({type(value).__name__}).")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}.")


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types.

    Missing keys take the dataclass defaults; a missing key without a default is an error.
    `path` is the key path used in messages (e.g. ``greg.train``).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{path}." if path else ""
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"{prefix}{key}: unknown key.{_suggest(key, fields)} Valid keys here: {sorted(fields)}."
        )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{prefix}{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: required key is missing.")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # __post_init__ checks of the dataclass
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(_post_init_message(path or cls.__name__, fields, str(err))) from err


def _post_init_message(path: str, fields: Mapping[str, Any], message: str) -> str:
    """A dataclass check's message under the key path of its section: one that starts with a
    field name gets the path joined to it (``seeds: give ...`` -> ``gdp.seeds: give ...``), one
    that already starts with the path stays, any other gets ``path: `` in front."""
    if message.startswith((f"{path}.", f"{path}:", f"{path} ")):
        return message
    head = re.match(r"[A-Za-z_]\w*", message)
    if head and head.group() in fields:
        return f"{path}.{message}"
    return f"{path}: {message}"


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain JSON/YAML-able dict."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------------------------------------
# params.yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently; DVC
    then refuses the file, far from the typo)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} at line {line} (first at line {seen[key]}): "
                "delete or rename one of them", key_node.start_mark)
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line from a YAML error: where, what, and the fix (PyYAML's own text spans lines and
    draws the offending line)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if not problem:
        return f"not valid YAML ({' '.join(str(err).split())}); fix its syntax."
    if "duplicate key" in problem:
        return f"{problem}."
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    started = (f" ({context} that starts at line {context_mark.line + 1})"
               if context and context_mark is not None else "")
    tabs = " (YAML indents with spaces, never tabs)" if "'\\t'" in problem else ""
    return f"not valid YAML{where}: {problem}{started}{tabs}; fix the syntax there."


def read_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Load params.yaml as a dict, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found. Run from the repository root or pass --params.")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no code runs
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {_yaml_problem(err)}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level "
                          "(`profile: <name>` and one `<section>:` block per stage), "
                          f"got {type(data).__name__}.")
    return data


def active_profile(params: Mapping[str, Any], override: str | None = None) -> str:
    """The profile to use: `override` if given, else params.yaml's `profile` key."""
    profile = override if override is not None else params.get("profile", "default")
    if profile not in PROFILES:
        raise ConfigError(f"profile: {profile!r} is not one of {list(PROFILES)}. Set `profile:` in params.yaml.")
    return profile


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merged_section(params: Mapping[str, Any], name: str, profile: str) -> dict[str, Any]:
    """Section `name` with its `profiles[profile]` block merged in (no validation)."""
    if name not in params:
        raise ConfigError(f"{name}: section missing from params.yaml.")
    raw = params[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {type(raw).__name__}.")
    raw = dict(raw)
    profiles = raw.pop("profiles", None) or {}
    if not isinstance(profiles, Mapping):
        raise ConfigError(f"{name}.profiles: expected a mapping of profile name to overrides.")
    for key in profiles:
        if key not in PROFILES:
            raise ConfigError(f"{name}.profiles.{key}: unknown profile.{_suggest(key, PROFILES)} Profiles: {list(PROFILES)}.")
    block = profiles.get(profile) or {}
    if not isinstance(block, Mapping):
        raise ConfigError(f"{name}.profiles.{profile}: expected a mapping of overrides.")
    return deep_merge(raw, block)


def resolve_section(name: str, params: Mapping[str, Any] | None = None, *,
                    profile: str | None = None, params_path: str | Path = DEFAULT_PARAMS) -> Any:
    """Validated, frozen config of section `name` for the active profile."""
    sections = registered_sections()
    if name not in sections:
        raise ConfigError(f"{name}: no such params section.{_suggest(name, sections)} Sections: {sorted(sections)}.")
    if params is None:
        params = read_params(params_path)
    prof = active_profile(params, profile)
    merged = merged_section(params, name, prof)
    try:
        return from_dict(sections[name], merged, name)
    except ConfigError as err:
        block = _profile_block_at_fault(sections[name], params, name, prof)
        if block is None:
            raise
        head = re.match(r"[\w.\[\]-]+", str(err))
        cut = head.end() if head else 0
        raise ConfigError(f"{str(err)[:cut]} ({block}){str(err)[cut:]}") from err


def _profile_block_at_fault(cls: type, params: Mapping[str, Any], name: str, profile: str) -> str | None:
    """``<name>.profiles.<profile>`` when the section is valid without that profile's block (so
    the error comes from the block: the key path of a merged section does not say so)."""
    raw = dict(params.get(name) or {})
    block = (raw.pop("profiles", None) or {}).get(profile)
    if not block:
        return None
    try:
        from_dict(cls, raw, name)
    except ConfigError:
        return None
    return f"{name}.profiles.{profile}"


def stage_inputs(params: Mapping[str, Any], section: str, *, model: str | None = None) -> dict[str, Any]:
    """What stage `section` reads from params.yaml, resolved (not validated), as plain data.

    A notebook stage reads its section and `data` at the active profile and at
    `REFERENCE_PROFILE` (its recipe table lists what the active profile changes from the papers'
    recipes), the architecture name of each `pretrain.models` entry (to refuse a checkpoint
    of another network) and, if any, the `pretrain.published` entries at the active profile.
    With `model`, the pretraining of that one entry: `pretrain` at the active
    profile with only that model's entry, and `data`. Nothing else of params.yaml is included, so
    a stage depending on this mapping ignores edits to the profiles it does not read.
    """
    active = active_profile(params)
    if model is not None:
        resolved = merged_section(params, section, active)
        models = resolved.get("models") or {}
        if model not in models:
            raise ConfigError(f"{section}.models.{model}: no such entry.{_suggest(model, models)} "
                              f"Entries: {sorted(models)}.")
        resolved["models"] = {model: models[model]}
        resolved.pop("published", None)   # not trained by this stage
        return {"profile": active, "data": merged_section(params, "data", active), section: resolved}
    read = list(dict.fromkeys((active, REFERENCE_PROFILE)))
    pretrain_section = merged_section(params, "pretrain", active)
    pretrain = pretrain_section.get("models") or {}
    inputs = {"profile": active,
              "data": {p: merged_section(params, "data", p) for p in read},
              section: {p: merged_section(params, section, p) for p in read},
              "pretrain.models": {k: (v or {}).get("name") if isinstance(v, Mapping) else v
                                  for k, v in pretrain.items()}}
    # Published weights are read only where their dataset is the pipeline's (`StudyContext.dense_path`):
    # the others are not inputs, so a CIFAR stage of the paper profile is not stale after an edit
    # of the ImageNet entries. Only when there are any: a pipeline without them keeps its inputs' bytes.
    from prunerep.data.config import DataConfig

    dataset = merged_section(params, "data", active).get("dataset", DataConfig.dataset)
    published = {k: v for k, v in (pretrain_section.get("published") or {}).items()
                 if not isinstance(v, Mapping) or v.get("dataset") == dataset}
    if published:
        inputs["pretrain.published"] = published
    return inputs


def write_stage_inputs(section: str, out: str | Path, *, model: str | None = None,
                       params_path: str | Path = DEFAULT_PARAMS) -> bool:
    """Write `stage_inputs` as canonical JSON (sorted keys); True if the file's bytes changed."""
    import json

    from prunerep.io import atomic_write_text

    text = json.dumps(stage_inputs(read_params(params_path), section, model=model),
                      indent=1, sort_keys=True, default=str) + "\n"
    path = Path(out)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(text, path)
    return True


def check_params(params: Mapping[str, Any] | None = None, *, params_path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Validate every section of params.yaml for every profile; return the active resolution."""
    if params is None:
        params = read_params(params_path)
    sections = registered_sections()
    allowed = set(sections) | {"profile"}
    for key in params:
        if key not in allowed:
            raise ConfigError(f"{key}: unknown top-level section in params.yaml.{_suggest(key, allowed)} Sections: {sorted(allowed)}.")
    active = active_profile(params)
    resolved: dict[str, dict[str, Any]] = {prof: {} for prof in PROFILES}
    for name in sections:
        if name not in params:
            raise ConfigError(f"{name}: section missing from params.yaml (see README, 'Configuration').")
        for prof in PROFILES:
            resolved[prof][name] = resolve_section(name, params, profile=prof)
    for prof in sorted(PROFILES, key=lambda p: p != active):  # the active profile's errors first
        for check in _CHECKS:
            check(resolved[prof], prof, prof == active)
    return resolved[active]


def set_profile(profile: str, params_path: str | Path = DEFAULT_PARAMS) -> None:
    """Rewrite the top-level `profile:` line of params.yaml, keeping comments and layout."""
    if profile not in PROFILES:
        raise ConfigError(f"profile: {profile!r} is not one of {list(PROFILES)}.")
    path = Path(params_path)
    text = path.read_text()
    new, count = re.subn(r"(?m)^profile:[ \t]*[A-Za-z_]+", f"profile: {profile}", text, count=1)
    if count != 1:
        raise ConfigError(f"{path}: no top-level `profile:` line to rewrite; add `profile: {profile}`.")
    from prunerep.io import atomic_write_text

    atomic_write_text(new, path)  # a kill mid-write must not leave a truncated params.yaml


def flat_overrides(overlay: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The leaves of a partial params mapping as dotted keys, as ``dvc exp run -S`` sets them.

    A list is one leaf (it replaces the list of params.yaml), and so is an empty mapping (it
    replaces the mapping there: ``{}`` empties it with `apply_overrides` / ``--write``; as a DVC
    flag it would merge, so `override_flags` refuses it). A key holding a dot (e.g. GReg's
    ``resnet50_imagenet_2.31x``) cannot be addressed by a dotted path: refused, naming it.
    """
    out: dict[str, Any] = {}
    for key, value in overlay.items():
        path = f"{prefix}{key}"
        if "." in str(key):
            raise ConfigError(f"{path}: the key {key!r} holds a dot, which `dvc exp run -S` reads as nesting; "
                              "remove it from the overlay and edit params.yaml at that path")
        if isinstance(value, Mapping) and value:
            out.update(flat_overrides(value, f"{path}."))
        else:
            out[path] = value
    return out


def apply_overrides(params: Mapping[str, Any], flat: Mapping[str, Any]) -> dict[str, Any]:
    """`params` with each dotted key of `flat` set (missing mappings created; lists replaced)."""
    import copy

    out = copy.deepcopy(dict(params))
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = copy.deepcopy(value)
    return out


def override_flags(flat: Mapping[str, Any]) -> list[str]:
    """``-S '++key=value'`` arguments of ``dvc exp run`` (values in JSON, which its grammar reads)."""
    import json
    import shlex

    # "++": set the key whether params.yaml has it or not (Hydra's grammar, which DVC parses -S with)
    for key, value in flat.items():
        if value == {}:   # DVC's ++key={} merges (nothing changes) where apply_overrides empties the mapping
            raise ConfigError(f"{key}: an empty mapping cannot be a `dvc exp run -S` flag (DVC would merge it, "
                              "changing nothing); use --write, or edit params.yaml there")
    return [f"-S {shlex.quote(f'++{k}={json.dumps(v, ensure_ascii=False)}')}" for k, v in flat.items()]


def overlay_overrides(path: str | Path, extra: Sequence[str] = ()) -> dict[str, Any]:
    """The dotted keys of a partial params file, then of ``KEY=VALUE`` strings (YAML values)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file (a partial params.yaml, e.g. docs/imagenet.params.yaml)")
    overlay = yaml.safe_load(path.read_text()) or {}
    if not isinstance(overlay, Mapping):
        raise ConfigError(f"{path}: expected a mapping of params.yaml sections")
    flat = flat_overrides(overlay)
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: give KEY=VALUE, e.g. data.source=/data/imagenet")
        flat[key] = yaml.safe_load(value)
    return flat


def main(argv: list[str] | None = None) -> int:
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default=str(DEFAULT_PARAMS), help="path of params.yaml")
    parser = argparse.ArgumentParser(prog="python -m prunerep.config")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", parents=[common], help="validate every section for every profile")
    p_set = sub.add_parser("set-profile", parents=[common], help="rewrite the `profile:` line")
    p_set.add_argument("profile", choices=PROFILES)
    p_show = sub.add_parser("show", parents=[common], help="print a resolved section")
    p_show.add_argument("section")
    p_in = sub.add_parser("inputs", parents=[common], help="write what one stage reads, resolved (JSON)")
    p_in.add_argument("section")
    p_in.add_argument("--model", default=None, help="one pretrain.models entry (the pretrain stage)")
    p_in.add_argument("--out", required=True, help="JSON file to write (rewritten only if it changes)")
    p_ov = sub.add_parser("overrides", parents=[common],
                          help="print a partial params file (e.g. docs/imagenet.params.yaml) as dvc exp run -S flags, "
                               "after checking it against params.yaml")
    p_ov.add_argument("overlay")
    p_ov.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="also set KEY (YAML value), e.g. data.source=/data/imagenet")
    p_ov.add_argument("--write", default=None, metavar="FILE",
                      help="instead of printing flags, write params.yaml with the keys applied to FILE (for "
                           "`python -m prunerep.nbrun <study> --params FILE --out DIR`)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "check":
            resolved = check_params(params_path=args.params)
            print(f"{args.params}: OK ({len(resolved)} sections, profile {active_profile(read_params(args.params))})")
        elif args.cmd == "set-profile":
            set_profile(args.profile, args.params)
            print(f"{args.params}: profile set to {args.profile}")
        elif args.cmd == "overrides":
            flat = overlay_overrides(args.overlay, args.set)
            applied = apply_overrides(read_params(args.params), flat)
            check_params(applied)
            if args.write:
                from prunerep.io import atomic_write_text

                atomic_write_text(f"# {args.params} with {args.overlay} applied (python -m prunerep.config overrides)\n"
                                  + yaml.safe_dump(applied, sort_keys=False, allow_unicode=True), args.write)
                print(f"{args.write}: written ({len(flat)} keys of {args.overlay} applied, valid)")
            else:
                print(" \\\n".join(override_flags(flat)))
        elif args.cmd == "inputs":
            changed = write_stage_inputs(args.section, args.out, model=args.model, params_path=args.params)
            print(f"{args.out}: {'written' if changed else 'unchanged'}")
        else:
            cfg = resolve_section(args.section, params_path=args.params)
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: sections register into the
    # registry of `prunerep.config`, which `python -m` would otherwise duplicate.
    from prunerep.config import main as _main

    raise SystemExit(_main())

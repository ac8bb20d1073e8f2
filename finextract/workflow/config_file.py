"""Reading a config file and checking it against the schema, with messages that name the key.

YAML is read strictly (a duplicated key is an error, not a silent overwrite); schema errors are rewritten to
say which key, what was found and what was expected; numbers must
be finite (NaN passes every JSON-schema range); ``~`` in paths is expanded.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from finextract.workflow.config_messages import ConfigError

def _strict_loader():
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently:
    a second `sampling:` block would drop the first one's keys)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicated key {key!r} (first given on line {seen[key] + 1}; "
                        "YAML would keep only the last)", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader

def load_config_file(path: str | Path) -> dict:
    """A YAML (or JSON) config file as a dict; a syntax error or a duplicated key is a ConfigError naming
    the file, line and column."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; expected a YAML config file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error})") from None
    try:
        config = yaml.load(text, Loader=_strict_loader())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(x for x in (error.context, error.problem) if x)
        raise ConfigError(f"{where}: {what}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected keys at the top level (a mapping), found a {type(config).__name__}")
    return config

def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"

def check_finite(node: Any, path: tuple = ()) -> None:
    """NaN and infinity pass every JSON-schema range check (all comparisons with NaN are false)."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{_key(path)} = {node}: expected a finite number")
    if isinstance(node, dict):
        for name, value in node.items():
            check_finite(value, (*path, name))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_finite(value, (*path, i))

def schema_message(error) -> str:
    """A jsonschema ValidationError as 'key: what was wrong', naming the innermost key."""
    path = list(error.absolute_path)
    message = error.message
    if error.validator == "required":
        missing = re.search(r"'([^']+)' is a required property", message)
        if missing:
            return f"{_key([*path, missing.group(1)])}: missing (this key is required)"
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        extra = re.findall(r"'([^']+)'", message)
        if extra:
            return (f"{_key([*path, extra[0]])}: unknown key (allowed here: "
                    f"{', '.join(sorted(error.schema.get('properties', {}))) or 'none'})")
    if error.validator == "oneOf" and error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(path):  # e.g. w: {lora: -1}: name w.lora, not w
            return schema_message(deepest) if deepest.validator == "oneOf" else \
                f"{_key(deepest.absolute_path)}: {deepest.message}"
        words = [e for e in error.context if e.validator != "const"]  # a number, or the word auto
        if len(words) == 1 and len(words) < len(error.context):
            consts = ", ".join(repr(e.schema["const"]) for e in error.context if e.validator == "const")
            return f"{_key(path)}: {words[0].message} (or give {consts})"
        options = "; or ".join(sorted({e.message for e in error.context}))
        return f"{_key(path)}: {error.instance!r} is not valid ({options})"
    if error.validator == "type" and isinstance(error.instance, str) and _looks_like_number(error.instance):
        message += (" (a number in quotes; inside a nested `--config` value Snakemake passes numbers as text: "
                    "give nested keys in a config file)")
    return f"{_key(path)}: {message}"

def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

def validate_schema(config: dict, schema_file: str | Path, prefix: str = "") -> None:
    """snakemake's ``validate`` (it fills in the schema's defaults), errors as ConfigError; ``prefix``
    names the section when ``config`` is one section of the whole config."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    check_finite(config)
    try:
        validate(config, str(Path(schema_file).resolve()))
    except WorkflowError as error:
        cause = error.__context__  # snakemake raises its WorkflowError while handling jsonschema's error
        message = schema_message(cause) if hasattr(cause, "absolute_path") else str(error)
        if prefix:
            message = f"{prefix}.{message}" if not message.startswith("(top level)") else prefix + message[11:]
        raise ConfigError(message) from None

def check_key_names(node: Any, path: tuple = ()) -> None:
    """Every key is a name: YAML reads unquoted 2024, 1.5, no, null as a number, a boolean, None."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise ConfigError(f"{_key(path)}: the key {key!r} is a {type(key).__name__} to YAML, not a name; "
                                  f"quote it in the config (e.g. '{key}': or \"{key}\":)")
            check_key_names(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_key_names(value, (*path, i))

def _expand(value):
    if isinstance(value, str) and value.startswith("lora:~"):
        return "lora:" + os.path.expanduser(value[len("lora:"):])
    return os.path.expanduser(value) if isinstance(value, str) and value.startswith("~") else value

def expand_home(config: dict) -> None:
    """``~`` in a path means the home folder, in the checks and in the jobs alike (the jobs get the
    expanded path: a shell-quoted ``~`` is never expanded)."""
    for key in ("base_model", "results"):
        if key in config:
            config[key] = _expand(config[key])
    for key in ("model", "calibration"):
        if key in config.get("sscd", {}):
            config["sscd"][key] = _expand(config["sscd"][key])
    for spec in config.get("private_sets", {}).values():
        spec["folder"] = _expand(spec["folder"])
    for spec in [config.get("defaults", {}), *config.get("targets", [])]:
        for key in ("pretrained", "finetuned", "images"):
            if key in spec:
                spec[key] = _expand(spec[key])
    for spec in (config.get("audit") or {}).get("suspects", {}).values():
        for key in ("candidates", "reference"):
            if key in spec:
                spec[key] = _expand(spec[key])


SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"


def schema_defaults(section: str, schema_file: str | Path = SCHEMA_DIR / "config.schema.yaml") -> dict:
    """The schema's defaults of one config section (``"world.pretrain"``), for tools that run a stage
    outside the workflow and must use the same values."""
    import yaml

    schema = yaml.safe_load(Path(schema_file).read_text())
    node = schema
    for key in section.split("."):
        node = _properties(node, schema)[key]
    return {key: spec["default"] for key, spec in _properties(node, schema).items() if "default" in spec}


def _properties(node: dict, schema: dict) -> dict:
    """A schema node's properties, with those of the definitions it includes by `allOf: [{$ref: ...}]`."""
    properties = {}
    for part in node.get("allOf", []):
        target = schema
        for key in part["$ref"].removeprefix("#/").split("/"):
            target = target[key]
        properties.update(_properties(target, schema))
    return {**properties, **node.get("properties", {})}

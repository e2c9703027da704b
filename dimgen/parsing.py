"""Bounded parsing of JSON and YAML text: size and nesting depth checked, YAML aliases refused.

Every JSON / YAML text dimgen reads (run.json, metrics.json, safetensors metadata, configs,
``--set`` values) goes through here, so a hostile file cannot cause a ``RecursionError`` or a
"billion laughs" expansion. Torch-free, so the CLI can parse arguments before heavy imports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import ConfigError, DimgenError, RunFolderError

__all__ = ["MAX_DEPTH", "MAX_TEXT_BYTES", "parse_json", "parse_yaml", "read_json", "short_error"]

MAX_TEXT_BYTES = 16 * 2**20
"""Largest JSON / YAML text dimgen parses (run.json, metrics.json, configs, weights metadata)."""
MAX_DEPTH = 32
"""Deepest nesting of lists / mappings accepted in JSON / YAML (dimgen writes at most ~5)."""

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _check_text(text: str, what: str, error: type[DimgenError]) -> None:
    if len(text) > MAX_TEXT_BYTES:
        raise error(f"{what} is too large ({len(text)} characters; at most {MAX_TEXT_BYTES})")


def parse_json(text: str, what: str, error: type[DimgenError] = RunFolderError) -> Any:
    """Parse JSON text after bounding its size and nesting depth (no RecursionError possible).

    Args:
        text: the JSON text.
        what: what it is (a file name), for the message.
        error: the :class:`DimgenError` subclass to raise.

    Raises:
        error: text over :data:`MAX_TEXT_BYTES`, nesting deeper than :data:`MAX_DEPTH`, or not JSON.
    """
    _check_text(text, what, error)
    depth = deepest = 0
    for ch in re.findall(r"[\[\]{}]", _JSON_STRING.sub('""', text)):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        raise error(f"{what} is nested {deepest} levels deep (at most {MAX_DEPTH}): refused")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise error(f"{what} is corrupt (not JSON: {short_error(exc)})") from None


def read_json(path: str | Path, error: type[DimgenError] = RunFolderError) -> Any:
    """Read and :func:`parse_json` a file, refusing one over :data:`MAX_TEXT_BYTES` unread.

    Raises:
        error: missing, unreadable, not UTF-8, too large, too deep or not JSON.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise error(
                f"{path} is too large ({path.stat().st_size} bytes; at most {MAX_TEXT_BYTES})"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path} cannot be read ({short_error(exc)})") from None
    return parse_json(text, str(path), error)


def parse_yaml(text: str, what: str, error: type[DimgenError] = ConfigError) -> Any:
    """Parse YAML with ``yaml.safe_load`` after bounding size and depth and refusing aliases.

    Anchors and aliases are refused outright ("billion laughs" expands a few lines into gigabytes
    once the aliased structure is walked); configs never need them. The depth check runs on the
    scanner's tokens, which are produced without recursion.

    Raises:
        error: text too large, nested deeper than :data:`MAX_DEPTH`, with anchors / aliases, or
            not valid YAML.
    """
    import yaml

    _check_text(text, what, error)
    opens = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
             yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)  # fmt: skip
    closes = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    depth = 0
    try:
        for tok in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(tok, (yaml.AliasToken, yaml.AnchorToken)):
                raise error(f"{what} uses YAML anchors / aliases (& / *), which dimgen refuses")
            depth += isinstance(tok, opens) - isinstance(tok, closes)
            if depth > MAX_DEPTH:
                raise error(f"{what} is nested more than {MAX_DEPTH} levels deep: refused")
        return _load_unique(text, what, error)
    except (yaml.YAMLError, RecursionError) as exc:
        raise error(f"{what}: not valid YAML ({short_error(exc)})") from None


def _load_unique(text: str, what: str, error: type[DimgenError]) -> Any:
    """``yaml.safe_load`` that refuses a mapping with a repeated key (PyYAML keeps the last)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise error(
                        f"{what}: key {key!r} appears twice (lines {seen[key]} and {line}); "
                        "remove one"
                    )
                seen[key] = line
            except TypeError:  # an unhashable key: the base constructor reports it
                break
        return loader.construct_mapping(node, deep=deep)

    UniqueKeyLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no object tags


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__

"""The safe YAML reader: plain data plus the 1-based line of every field.

The YAML is composed into a node tree first (which keeps line numbers) and converted
here, not by PyYAML's constructor: that lets us refuse duplicate keys, count alias
expansions (a "billion laughs" document is refused, not expanded) and keep mapping
keys as written (`on:` stays the string "on", not YAML 1.1's `True`). Used for the
fleet file and by `console.render` for manifest templates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from console.errors import ConfigError
from console.names import show

# Limits that keep a hostile or broken file from hanging the console.
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_ALIASES = 1000
MAX_NODES = 200_000
MAX_DEPTH = 64

# A field's place in a document: mapping keys and list indexes from the top.
Path_ = tuple[str | int, ...]


def dotted(path: Path_) -> str:
    """`clusters[2].groups` for `("clusters", 2, "groups")`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class _TooComplex(Exception):
    """The document has more aliases or nodes than a fleet file ever needs."""


# libyaml's parser when PyYAML has it (about 10x faster); the tree is converted below.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Budget:
    """What one YAML stream may cost to expand: values and alias uses, all documents."""

    def __init__(self) -> None:
        self.nodes = 0
        self.aliases = 0
        self.seen: set[int] = set()  # ids of nodes already expanded: a revisit is an alias

    def visit(self, node: yaml.Node, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            raise _TooComplex(f"more than {MAX_NODES} values or nesting deeper than "
                              f"{MAX_DEPTH} (after expanding aliases)")
        if id(node) in self.seen:
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooComplex(f"more than {MAX_ALIASES} aliases")
        else:
            self.seen.add(id(node))


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Converter:
    """Turns a composed node tree into plain data, recording the line of every path."""

    def __init__(self, source: str, budget: _Budget) -> None:
        self.source = source
        self.budget = budget
        self.lines: dict[Path_, int] = {}  # path -> line of the value
        self.key_lines: dict[Path_, int] = {}  # path -> line of its key
        self.quoted: set[Path_] = set()  # paths of quoted scalars ("..." or '...')
        self._scalars = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, message: str) -> ConfigError:
        return ConfigError(f"{self.source}:{node.start_mark.line + 1}: {message}")

    def convert(self, node: yaml.Node, path: Path_, depth: int = 0) -> Any:
        self.budget.visit(node, depth)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i), depth + 1)
                    for i, item in enumerate(node.value)]
        if node.style in ("'", '"'):
            self.quoted.add(path)
        try:
            return self._scalars.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "cannot read this value"
            raise self.fail(node, f"{dotted(path) or 'value'}: {problem}") from None
        except Exception:  # only this one scalar's construction
            # PyYAML's scalar constructors raise assorted built-in errors for malformed
            # values: `2024-13-45` resolves as a timestamp, `!!int ` is an IndexError.
            raise self.fail(node, f"{dotted(path) or 'value'}: {show(node.value)} is not "
                            f"a valid {node.tag.rsplit(':', 1)[-1]} (quote it to keep a "
                            "string)") from None

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(value_node):
                    for k, v in self._mapping(source, path, depth + 1).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"{dotted(path) or 'top level'}: a key must be a "
                                "plain name, not a list or mapping")
            # The key as written: `on`, `yes`, `1` stay strings (YAML 1.1 would
            # turn `on:` into True).
            key = key_node.value
            if key in out:
                first = self.key_lines[(*path, key)]
                raise self.fail(key_node, f"{dotted((*path, key))}: duplicate key "
                                f"(first at line {first})")
            self.key_lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.convert(value_node, (*path, key), depth + 1)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and all(
                isinstance(n, yaml.MappingNode) for n in node.value):
            return list(node.value)
        raise self.fail(node, "'<<' merges a mapping or a list of mappings")


def read_text(path: Path, source: str, what: str = "fleet file") -> str:
    """A YAML file's text; ConfigError for a missing, unreadable or oversized file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{source}: file too large for a {what} "
                              f"(more than {MAX_FILE_BYTES // (1024 * 1024)} MiB)")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = (" (give the fleet file with --config or $RELEASE_CONSOLE_CONFIG)"
                if what == "fleet file" else "")
        raise ConfigError(f"{source}: no such file{hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class YamlDocument:
    """One parsed YAML document: plain data, and the 1-based line of every path in it."""

    data: Any
    lines: Mapping[Path_, int]  # path -> line of the value
    key_lines: Mapping[Path_, int]  # path -> line of its key
    quoted: frozenset[Path_] = frozenset()  # paths of quoted scalars

    def line(self, path: Path_) -> int:
        """The line of `path`, else of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


def parse_yaml(text: str, source: str) -> list[YamlDocument]:
    """Every document of a YAML stream, safely: duplicate keys, too many aliases or
    nodes (alias bombs) and syntax errors are ConfigErrors with the line. Empty
    documents are left out. Mapping keys stay as written (`on` is not `True`)."""
    loader = _LOADER(text)
    docs: list[YamlDocument] = []
    budget = _Budget()
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            converter = _Converter(source, budget)
            data = converter.convert(node, ())
            if data is not None:
                docs.append(YamlDocument(data, converter.lines, converter.key_lines,
                                         frozenset(converter.quoted)))
    except _TooComplex as exc:
        raise ConfigError(f"{source}: refused: the document is too complex ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        if context and getattr(exc, "problem", None):
            problem = f"{context}, {problem}"
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return docs


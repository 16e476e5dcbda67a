"""`load(path)`: read and validate a fleet file into a `FleetConfig`."""

from __future__ import annotations

from pathlib import Path

from console.config.app_section import app_section
from console.config.checks import Checker, kind_of
from console.config.freeze_section import freeze_section
from console.config.health_section import health_section
from console.config.model import FleetConfig
from console.config.sections import (clusters_section, defaults_section, order_section,
                                     strategies_section, vault_section)
from console.config.yaml_reader import YamlDocument, dotted, parse_yaml, read_text
from console.errors import ConfigError

_TOP_KEYS = ("app", "defaults", "vault", "clusters", "strategies", "order", "freeze", "sim",
             "health")


def _flat_lines(conv: YamlDocument) -> dict[str, int]:
    out = {dotted(path): line for path, line in conv.lines.items() if path}
    for path, line in conv.key_lines.items():
        out.setdefault(dotted(path), line)
    return out


def load(path: str | Path) -> FleetConfig:
    """Load and validate a fleet file; `ConfigError("file:line: field: ...")` if wrong."""
    source = str(path)
    abs_path = Path(path).expanduser().absolute()
    docs = parse_yaml(read_text(abs_path, source), source)
    if not docs:
        raise ConfigError(f"{source}:1: the file is empty; expected a mapping with "
                          "`app` and `clusters`")
    if len(docs) > 1:
        raise ConfigError(f"{source}:{docs[1].line(())}: a second YAML document; the fleet "
                          "file is one document")
    conv = docs[0]
    data = conv.data
    ck = Checker(conv, source, abs_path.parent)
    if not isinstance(data, dict):
        raise ck.fail((), f"expected a mapping with `app` and `clusters`, got {kind_of(data)}")
    ck.mapping(data, (), _TOP_KEYS, required=("app", "clusters"))
    app = app_section(ck, data["app"])
    defaults = defaults_section(ck, data.get("defaults"))
    clusters_raw = data["clusters"]
    uses_vault = isinstance(clusters_raw, list) and any(
        isinstance(c, dict) and isinstance(c.get("credentials"), dict)
        and c["credentials"].get("vault") not in (None, False) for c in clusters_raw)
    vault = vault_section(ck, data.get("vault")) if data.get("vault") is not None or uses_vault \
        else None
    clusters = clusters_section(ck, clusters_raw, app, defaults, vault)
    strategies = strategies_section(ck, data.get("strategies"), clusters)
    ids = tuple(c.id for c in clusters)
    return FleetConfig(
        path=abs_path, app=app, clusters=clusters, strategies=strategies, vault=vault,
        sim=ck.free_mapping(data.get("sim"), ("sim",)), raw=data,
        order=order_section(ck, data.get("order"), ids), defaults=defaults, source=source,
        lines=_flat_lines(conv), freeze=freeze_section(ck, data.get("freeze"), clusters),
        health=health_section(ck, data.get("health")))

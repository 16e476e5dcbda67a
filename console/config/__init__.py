"""The fleet file (`clusters.yaml`): its model and its strict loader.

`load(path)` reads the fleet file and returns a frozen `FleetConfig`. Every mistake in
the file is a `ConfigError` naming the file, the 1-based line and the dotted field
path, e.g. `clusters.yaml:14: clusters[2].groups: expected a list of names, got 'prd'`.
The full reference of the keys is docs/config.md.

- `yaml_reader` - the safe YAML reader (line numbers, no duplicate keys, no alias
  bombs); `console.render` reads manifest templates with it too.
- `model` - the frozen dataclasses and the defaults.
- `checks` - the value checks (`Checker`) and the parsers of durations and budgets.
- `app_section`, `chart_section`, `freeze_section`, `health_section`, `sections` - one
  parser per section of the file.
- `loader` - `load()`, which runs them in order.

Callers import from `console.config`; the names below are its public surface.
"""

from __future__ import annotations

from console.config.checks import (deep_merge, did_you_mean, failure_budget_count,
                                   image_registry_host, is_glob, is_loopback_host,
                                   parse_duration, parse_failure_budget, parse_pace,
                                   resolve_path, is_zero_duration)
from console.config.loader import load
from console.config.model import (BUILTIN_STRATEGIES, DEFAULT_HISTORY_PATH,
                                  DEFAULT_ROLLOUT_TIMEOUT, DEFAULT_VAULT_PATH_PATTERN,
                                  NOTIFY_EVENTS, PRODUCTION_GROUPS, RESERVED_VALUE_NAMES,
                                  REST, App, ChartConfig, ChartRegistryConfig, Cluster, Credentials, EmailConfig, FleetConfig,
                                  FreezeWindow, HealthCheck, HealthConfig,
                                  HistoryConfig, NotifyConfig, RegistryConfig, Strategy,
                                  VaultConfig)
from console.config.yaml_reader import (MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES,
                                        YamlDocument, parse_yaml, read_text)

__all__ = [
    "HealthCheck", "HealthConfig",
    "BUILTIN_STRATEGIES", "DEFAULT_HISTORY_PATH", "DEFAULT_ROLLOUT_TIMEOUT",
    "DEFAULT_VAULT_PATH_PATTERN", "MAX_ALIASES", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES",
    "NOTIFY_EVENTS", "PRODUCTION_GROUPS", "RESERVED_VALUE_NAMES", "REST", "App", "ChartConfig", "ChartRegistryConfig", "Cluster",
    "Credentials", "EmailConfig", "FleetConfig", "FreezeWindow", "HistoryConfig", "NotifyConfig",
    "RegistryConfig", "Strategy", "VaultConfig", "YamlDocument", "deep_merge",
    "did_you_mean", "failure_budget_count", "image_registry_host", "is_glob",
    "is_loopback_host", "load", "parse_duration",
    "parse_failure_budget", "parse_pace", "is_zero_duration", "parse_yaml", "read_text", "resolve_path",
]

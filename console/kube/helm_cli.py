"""Running the helm binary for one cluster: private files, a bounded number, a timeout each.

Credentials never go on a command line: the cluster's resolved kubeconfig is written to a
0600 file in the console's private directory (`console.kube.private_files.private_dir()`, 0700)
for the one helm call that needs it and removed right after, and so is the values file.
Helm gets a clean environment (no inherited `KUBECONFIG`, `HELM_KUBETOKEN`, ...) with its
cache/config/data homes in that private directory too, so nothing lands in `~/.cache`
or `~/.config` and no stray repository configuration is read. An `oci://` chart's
registry login (`console.kube.helm_login`) is a 0600 registry config file in that HOME.

Helm processes cost tens of MiB each: `MAX_PROCESSES` (a process-wide semaphore) bounds
how many run at once, on top of the engine's per-strategy parallelism.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from console.kube.client import ClusterError
from console.kube.helm_login import ChartLogin

# Seconds one helm call may take (it does not wait for the rollout: the console does).
DEFAULT_TIMEOUT = 120.0
# How many helm processes may run at once in this console, whatever the strategy says.
MAX_PROCESSES = int(os.environ.get("RELEASE_CONSOLE_HELM_PROCESSES", "16") or 16)
_slots = threading.BoundedSemaphore(max(1, MAX_PROCESSES))
# Environment variables helm may inherit (everything else, credentials included, is dropped).
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR",
             "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")
# At most this much of helm's stderr goes into an error message.
MAX_ERROR_CHARS = 600
# At most this much of `helm lint`'s findings (the first ones: they name what is wrong).
MAX_LINT_CHARS = 1500


@dataclass(frozen=True)
class HelmResult:
    """What one helm call printed."""

    stdout: str
    stderr: str


def helm_version(binary: Path, timeout: float = 10.0) -> str:
    """`helm version --short` (e.g. `v3.22.0+g...`); raises `OSError`/`subprocess` errors."""
    out = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True,
                         timeout=timeout, env=_base_env(None), check=True)
    return out.stdout.strip()


class HelmRunner:
    """Runs helm for one cluster and namespace with its private kubeconfig."""

    def __init__(self, binary: Path | None, cluster: str, namespace: str,
                 kubeconfig: Mapping[str, Any], storage: str = "secret",
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.binary = binary
        self.cluster = cluster
        self.namespace = namespace
        self.storage = storage
        self.timeout = timeout
        self._kubeconfig = dict(kubeconfig)
        # One helm process per cluster at a time (a second would race on the release).
        self._lock = threading.Lock()

    def run(self, args: Sequence[str], *, values: Mapping[str, Any] | None = None,
            cluster_access: bool = True, timeout: float | None = None,
            login: ChartLogin | None = None) -> HelmResult:
        """`helm ARGS` (+ `-f <values file>` when `values`, + `--kubeconfig`, `-n`, +
        `--registry-config <private file>` when a chart registry `login` is given).

        Raises `ClusterError` naming the cluster on a non-zero exit or a timeout; the
        message carries the end of helm's stderr with the private file paths removed (a
        refused login names the fleet file field it came from). A missing helm, or a
        login that cannot be read, is a `UserError`.
        """
        if self.binary is None:
            from console.binaries import require
            self.binary = require("helm")
        limit = timeout or self.timeout
        with self._lock, _slots, ExitStack() as files:
            argv = [str(self.binary), *args]
            if values is not None:
                argv += ["-f", str(files.enter_context(private_file(
                    "values-", yaml.safe_dump(dict(values), sort_keys=True))))]
            if cluster_access:
                kubeconfig = files.enter_context(private_file(
                    "kubeconfig-", yaml.safe_dump(self._kubeconfig)))
                argv += ["--kubeconfig", str(kubeconfig), "-n", self.namespace]
            home = files.enter_context(private_home())
            if login is not None:
                argv += ["--registry-config", str(login.write_config(home))]
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True,
                                        env=_base_env(home, self.storage),
                                        start_new_session=True)
            except OSError as exc:
                raise ClusterError(self.cluster, f"cannot run helm ({exc.strerror})") from None
            try:
                stdout, stderr = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise ClusterError(self.cluster, f"helm {args[0]} did not finish within "
                                   f"{limit:g}s (stopped)") from None
            except BaseException:
                _kill(proc)
                raise
        if proc.returncode != 0:
            refused = login.refused(stderr) if login is not None else None
            if refused:
                raise ClusterError(self.cluster, refused)
            # `helm lint` prints its findings on stdout; stderr only counts failed charts.
            detail = (lint_findings(stdout) if args[0] == "lint" else "") or clean_error(stderr)
            raise ClusterError(self.cluster, f"helm {args[0]} failed: {detail}")
        return HelmResult(stdout, stderr)


def _private_path_pattern() -> re.Pattern[str]:
    """Paths inside any console's private directory (`release-console.<owner>...`)."""
    from console.kube.private_files import PREFIX
    return re.compile(r"/\S*" + re.escape(PREFIX) + r"[^/\s]*/[^\s:\"']+")


_PRIVATE_PATH = _private_path_pattern()


def clean_error(stderr: str) -> str:
    """The useful end of helm's stderr, without the private file paths."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " ".join(lines[-3:]) or "no error output"
    text = _PRIVATE_PATH.sub("<private file>", text)
    return text[-MAX_ERROR_CHARS:]


def lint_findings(stdout: str) -> str:
    """The `[ERROR]` findings `helm lint` printed (what makes it fail, with template and
    line), without private file paths, joined by "; "; "" when there are none."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    found: list[str] = []
    in_error = False
    for line in lines:
        if line.startswith(("[", "==>")):
            in_error = line.startswith("[ERROR]")
            if in_error:
                found.append(line)
        elif in_error:
            found[-1] += " " + line           # an error finding's continuation line
    text = _PRIVATE_PATH.sub("<private file>", "; ".join(found))
    if len(text) > MAX_LINT_CHARS:
        text = text[:MAX_LINT_CHARS].rstrip() + " ... (more: run helm lint on the chart)"
    return text


@contextmanager
def private_file(prefix: str, text: str) -> Iterator[Path]:
    """A 0600 file with `text` in the private directory, removed on exit."""
    from console.kube.private_files import private_dir
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".yaml", dir=private_dir())
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        yield Path(name)
    finally:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


@contextmanager
def private_home() -> Iterator[Path]:
    """A private, empty HOME for one helm call (its cache, config and data dirs)."""
    from console.kube.private_files import private_dir
    home = Path(tempfile.mkdtemp(prefix="helm-home-", dir=private_dir()))
    try:
        yield home
    finally:
        import shutil
        shutil.rmtree(home, ignore_errors=True)


def _base_env(home: Path | None, storage: str = "secret") -> dict[str, str]:
    env = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}
    env["HELM_DRIVER"] = storage
    if home is not None:
        env.update(HOME=str(home), HELM_CACHE_HOME=str(home / "cache"),
                   HELM_CONFIG_HOME=str(home / "config"), HELM_DATA_HOME=str(home / "data"))
    return env


def _kill(proc: subprocess.Popen) -> None:
    """Stop helm and anything it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.communicate()

"""JUnit XML for CI servers: one test case per cluster of a release.

Jenkins (`junit` step), GitLab (`artifacts:reports:junit`) and GitHub (test-report
actions) all render this format: a failed or rolled-back cluster is a `<failure>`, a
cluster that was never started a `<skipped>`, an interrupted one an `<error>`.

`check_writable` runs before a release starts: a report that could not be written at the
end would otherwise turn a finished release into a traceback (and CI would read exit 1).
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from console.errors import ValidationError
from console.events import FAILURE_OUTCOMES, Outcome

if TYPE_CHECKING:
    from console.engine.api import ReleaseResult

# Characters XML 1.0 cannot carry (an error text from a server may hold any).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("?", text)


def to_xml(result: ReleaseResult, app: str, version: str, strategy: str = "") -> str:
    """The JUnit document of a `ReleaseResult` as a string."""
    cases = result.clusters
    failures = sum(c.outcome in FAILURE_OUTCOMES for c in cases)
    errors = sum(c.outcome == Outcome.INTERRUPTED for c in cases)
    skipped = sum(c.outcome == Outcome.SKIPPED for c in cases)
    total_time = sum(c.duration for c in cases)
    suites = ET.Element("testsuites", name=f"release-console {app} {version}",
                        tests=str(len(cases)), failures=str(failures), errors=str(errors),
                        skipped=str(skipped), time=f"{total_time:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"release {app} {version}",
                          tests=str(len(cases)), failures=str(failures), errors=str(errors),
                          skipped=str(skipped), time=f"{total_time:.3f}")
    props = ET.SubElement(suite, "properties")
    for name, value in (("release_id", result.release_id), ("outcome", str(result.outcome)),
                        ("exit_code", str(result.exit_code)), ("strategy", strategy),
                        ("version", version)):
        ET.SubElement(props, "property", name=name, value=value)
    for c in cases:
        case = ET.SubElement(suite, "testcase", classname=f"release.{app}", name=c.cluster,
                             time=f"{c.duration:.3f}")
        error = c.error   # scrubbed where the engine made it (ClusterResult)
        text = _clean(f"cluster {c.cluster}: {c.from_version or '-'} -> {c.to_version or '-'}: "
                      f"{c.outcome}" + (f"\n{error}" if error else "")
                      + (f"\nrolled back to {c.rolled_back_to}" if c.rolled_back_to else ""))
        if c.outcome == Outcome.FAILED:
            ET.SubElement(case, "failure", message=error or "failed", type="failed").text = text
        elif c.outcome == Outcome.ROLLED_BACK:
            ET.SubElement(case, "failure", message=error or "rolled back",
                          type="rolled_back").text = text
        elif c.outcome == Outcome.INTERRUPTED:
            ET.SubElement(case, "error", message=error or "interrupted",
                          type="interrupted").text = text
        elif c.outcome == Outcome.SKIPPED:
            ET.SubElement(case, "skipped", message=error or "not started")
        else:
            ET.SubElement(case, "system-out").text = text
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def check_writable(path: str | Path) -> Path:
    """`path` as a `Path` when a report can be written there; `ValidationError` (exit 2,
    before anything starts) when not. Missing directories are not created: a typo in a
    CI job's path should say so, not leave a report where nobody looks."""
    target = Path(path)
    parent = target.parent
    if not str(path).strip():
        raise ValidationError("--junit: empty path")
    try:
        if len(target.name.encode()) > os.pathconf(parent, "PC_NAME_MAX"):
            raise ValidationError(f"--junit: file name too long ({len(target.name)} "
                                  "characters)")
        is_dir = target.is_dir()
    except OSError:
        is_dir = False       # the parent is missing or no directory: said below
    if is_dir:
        raise ValidationError(f"--junit {path}: is a directory; name a file")
    if parent.exists() and not parent.is_dir():
        raise ValidationError(f"--junit {path}: {parent} is not a directory")
    if not parent.is_dir():
        raise ValidationError(f"--junit {path}: directory {parent} does not exist")
    try:
        # The way `write` will do it: a temporary file in the same directory, replaced
        # into place - so this proves exactly what the end of the release needs.
        fd, tmp = tempfile.mkstemp(prefix=".junit-check-", dir=parent)
    except OSError as exc:
        raise ValidationError(f"--junit {path}: cannot write in {parent}: "
                              f"{exc.strerror or exc}") from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)
    return target


def write(path: str | Path, result: ReleaseResult, app: str, version: str, strategy: str = "") -> Path:
    """Write the JUnit file atomically (a CI job never reads half a report). The directory
    must exist (`check_writable`); `OSError` when the file cannot be written."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".junit-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(to_xml(result, app, version, strategy))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target

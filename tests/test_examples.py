"""The examples stay true to the CLI: every `deploy` flag the Jenkinsfiles and the
Indexed Job manifest pass is one `release-console deploy` has, and the sharded ones give
every shard the same release id and a `--shard K/N` that `deploy` accepts."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from console.cli import build_parser
from console.plan import parse_shard

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def deploy_flags() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command" or a.choices)  # noqa: SLF001
    deploy = sub.choices["deploy"]
    return {flag for action in deploy._actions for flag in action.option_strings}  # noqa: SLF001


def passed_flags(text: str) -> set[str]:
    """The `--flags` of the deploy commands in a shell script embedded in an example."""
    found: set[str] = set()
    for line in text.splitlines():
        if "set --" in line or line.strip().startswith("--"):
            found |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", line))
    return found


def test_every_example_passes_only_flags_deploy_has():
    known = deploy_flags()
    for name in ("Jenkinsfile", "Jenkinsfile.shards", "release-shards-job.yaml"):
        used = passed_flags((EXAMPLES / name).read_text())
        assert used, name
        assert used <= known, (name, used - known)


def test_the_indexed_job_maps_its_completion_index_to_a_shard():
    job = yaml.safe_load((EXAMPLES / "release-shards-job.yaml").read_text())
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3
    script = spec["template"]["spec"]["containers"][0]["args"][0]
    assert '--shard "$((JOB_COMPLETION_INDEX + 1))/3"' in script
    # What the shell makes of it for each pod is a shard `deploy` accepts.
    assert [parse_shard(f"{index + 1}/3") for index in range(3)] == [(1, 3), (2, 3), (3, 3)]
    env = {e["name"]: e for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["RELEASE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['batch.kubernetes.io/job-name']"
    assert '--release-id "$RELEASE_ID"' in script
    assert spec["backoffLimit"] == 0 and \
        spec["template"]["spec"]["restartPolicy"] == "Never"


def test_the_sharded_jenkinsfile_runs_every_shard_with_one_release_id():
    text = (EXAMPLES / "Jenkinsfile.shards").read_text()
    assert "parallel branches" in text
    assert '--shard "$RC_SHARD" --release-id "$RC_RELEASE_ID"' in text
    assert 'RC_SHARD=${shard}/${SHARDS}' in text

"""Least privilege on real Kubernetes (issue 12 item 4): the manifests `release-console rbac`
prints, applied by the admin, give a ServiceAccount token (minted by the real TokenRequest
API, authorised by the real RBAC authorizer) everything a release and a rollback need - and
taking one rule away makes pre-flight fail naming the verb, resource and namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from console.engine import ReleaseRequest
from console.rbac import SERVICE_ACCOUNT, manifests
from tests.lab.conftest import approve, wait_for

pytestmark = pytest.mark.real


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "kubectl"), "--kubeconfig",
                           str(kubeconfig), "--cache-dir", str(kubeconfig.parent / ".kube-cache"),
                           *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def limited(lab, tmp_path):
    """A lab stage whose c0 kubeconfig holds only the ServiceAccount's token."""
    from tests.lab.conftest import Stage, _namespaces

    stage = Stage("lab", lab, tmp_path, f"rbac{next(_namespaces)}-{{cluster}}")
    stage.write()
    admin = tmp_path / "admin-c0.yaml"
    admin.write_text(yaml.safe_dump(lab.kubeconfig("c0")))
    out = kubectl(admin, "apply", "--server-side", "-f", "-",
                  stdin=manifests(stage.config.cluster("c0"), stage.config))
    assert out.count("serverside-applied") == 6, out
    token = lab.token("c0", stage.ns("c0"), SERVICE_ACCOUNT)
    (stage.config_path.parent / "c0.yaml").write_text(yaml.safe_dump(lab.kubeconfig("c0", token)))
    return stage, admin


def test_a_release_and_a_rollback_run_with_only_the_printed_rules(limited):
    stage, _admin = limited
    text = (stage.config_path.parent / "c0.yaml").read_text()
    assert "client-key" not in text and "token" in text     # no admin credential left
    engine = stage.engine()
    try:
        first = engine.run(ReleaseRequest(tag="v1", clusters="c0"), approve)
        checks = {r.check: (r.ok, r.detail) for r in first.preflight.results}
        second = engine.run(ReleaseRequest(tag="v2", clusters="c0"), approve)
        broken = engine.run(ReleaseRequest(tag="v3-broken", clusters="c0"), approve)
        back = engine.rollback("c0", "v1")
    finally:
        engine.close()
    assert first.exit_code == 0, first.preflight.table()
    assert checks["access"][0] and checks["dry-run"][0] and checks["capacity"][0], checks
    assert second.exit_code == 0
    assert broken.clusters[0].outcome == "rolled_back", broken.clusters
    assert back.outcome == "rolled_back", back
    assert stage.version("c0") == "v1"
    wait_for(lambda: stage.ready_pods("c0", "v1") == 2, "v1 ready after the rollback")


def test_a_missing_rule_fails_pre_flight_naming_verb_resource_and_namespace(limited):
    stage, admin = limited
    ns = stage.ns("c0")
    role = yaml.safe_load(kubectl(admin, "-n", ns, "get", "role", SERVICE_ACCOUNT, "-o", "yaml"))
    for rule in role["rules"]:
        if rule["resources"] == ["deployments"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "delete"]
    kubectl(admin, "apply", "--server-side", "--force-conflicts", "-f", "-",
            stdin=yaml.safe_dump({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                                  "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns},
                                  "rules": role["rules"]}))
    engine = stage.engine()
    try:
        report = engine.preflight(ReleaseRequest(tag="v1", clusters="c0"))
    finally:
        engine.close()
    access = [r for r in report.results if r.check == "access"]
    assert [r.ok for r in access] == [False], report.table()
    assert f"delete deployments.apps in namespace '{ns}'" in access[0].detail
    assert stage.deployment("c0") is None        # nothing was applied

"""The JUnit report: one test case per cluster, in a form CI servers parse."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from console.engine import ClusterResult, ReleaseResult
from console.junit import write


def test_one_case_per_cluster_by_outcome(tmp_path):
    result = ReleaseResult("r-20261125-1402-ab12", "failed", 1, (
        ClusterResult("a", "healthy", "v1", "v2", 3.25),
        ClusterResult("b", "rolled_back", "v1", "v2", 5.0, "pods failing: ImagePullBackOff\x1b[0m",
                      rolled_back_to="v1"),
        ClusterResult("c", "failed", "v1", "v2", 1.0, "unreachable: connection refused"),
        ClusterResult("d", "interrupted", "v1", "v2", 2.0, "interrupted: release aborted"),
        ClusterResult("e", "skipped", "v1", "v2", 0.0, "stopped at the first failure"),
    ))
    (tmp_path / "out").mkdir()
    path = write(tmp_path / "out" / "junit.xml", result, "user-service", "v2", "serial")
    suite = ET.parse(path).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("5", "2", "1", "1")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["release_id"] == "r-20261125-1402-ab12" and props["exit_code"] == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["a"].get("time") == "3.250" and len(cases["a"]) == 1  # system-out only
    b = cases["b"].find("failure")
    assert b.get("type") == "rolled_back" and "rolled back to v1" in b.text
    assert "\x1b" not in b.get("message")
    assert cases["c"].find("failure").get("message") == "unreachable: connection refused"
    assert cases["d"].find("error").get("type") == "interrupted"
    assert cases["e"].find("skipped").get("message") == "stopped at the first failure"
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temp file left

"""The rollout-status rules and the pod classification, as pure functions."""

from __future__ import annotations

import pytest

from console.kube.rollout import (FailFast, Phase, pod_problems, pod_ready, pod_summary,
                                  rollout_status, verify_pods)


def deployment(generation=2, observed=2, replicas=3, updated=3, total=3, available=3,
               ready=3, conditions=()):
    spec = {} if replicas is None else {"replicas": replicas}
    return {"metadata": {"name": "web", "generation": generation}, "spec": spec,
            "status": {"observedGeneration": observed, "updatedReplicas": updated,
                       "replicas": total, "availableReplicas": available,
                       "readyReplicas": ready, "conditions": list(conditions)}}


def test_complete_when_every_rule_holds():
    status = rollout_status(deployment(), generation=2)
    assert status.phase is Phase.COMPLETE and status.done
    assert status.message == 'deployment "web" successfully rolled out'
    assert (status.desired, status.updated, status.available, status.total) == (3, 3, 3, 3)


def test_stale_complete_from_previous_generation_is_not_done():
    # The object already carries our generation but the controller has not observed it:
    # the status still describes the previous rollout, which was complete.
    status = rollout_status(deployment(generation=3, observed=2), generation=3)
    assert status.phase is Phase.OBSERVING and not status.done
    assert status.message == "Waiting for deployment spec update to be observed..."


def test_pinned_generation_beyond_the_object_read_is_still_observing():
    # A watch event from before our apply reached the server (older object version).
    status = rollout_status(deployment(generation=2, observed=2), generation=3)
    assert status.phase is Phase.OBSERVING


def test_unpinned_uses_the_objects_own_generation():
    assert rollout_status(deployment(generation=4, observed=3)).phase is Phase.OBSERVING
    assert rollout_status(deployment(generation=4, observed=4)).phase is Phase.COMPLETE


def test_progress_deadline_fails_before_any_other_rule():
    cond = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    status = rollout_status(deployment(updated=1, available=0, conditions=[cond]), 2)
    assert status.phase is Phase.FAILED and status.done
    assert status.message == 'deployment "web" exceeded its progress deadline'


def test_other_progressing_reasons_do_not_fail():
    cond = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
    assert rollout_status(deployment(conditions=[cond]), 2).phase is Phase.COMPLETE


def test_waiting_for_updated_replicas():
    status = rollout_status(deployment(updated=1, total=4, available=3), 2)
    assert status.phase is Phase.PROGRESSING
    assert status.message.endswith("1 out of 3 new replicas have been updated...")


def test_waiting_for_old_replicas_to_terminate():
    status = rollout_status(deployment(updated=3, total=5, available=3), 2)
    assert status.phase is Phase.PROGRESSING
    assert status.message.endswith("2 old replicas are pending termination...")


def test_waiting_for_available_replicas():
    status = rollout_status(deployment(updated=3, total=3, available=2), 2)
    assert status.phase is Phase.PROGRESSING
    assert status.message.endswith("2 of 3 updated replicas are available...")


def test_ready_replicas_and_available_condition_are_ignored_as_kubectl_does():
    # kubectl never looks at readyReplicas or the Available condition.
    cond = {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}
    status = rollout_status(deployment(ready=0, conditions=[cond]), 2)
    assert status.phase is Phase.COMPLETE


def test_unset_replicas_skips_the_updated_rule():
    status = rollout_status(deployment(replicas=None, updated=0, total=0, available=0), 2)
    assert status.phase is Phase.COMPLETE and status.desired == 1


def test_missing_status_is_observing():
    status = rollout_status({"metadata": {"name": "web", "generation": 1}, "spec": {}}, 1)
    assert status.phase is Phase.OBSERVING


def test_scaled_to_zero_is_complete():
    status = rollout_status(deployment(replicas=0, updated=0, total=0, available=0), 2)
    assert status.phase is Phase.COMPLETE


IMAGE = "reg/app:v2"


def pod(name="web-1", image=IMAGE, phase="Pending", waiting=None, terminated=None,
        restarts=0, ready=False, deleting=False, unschedulable=False, init_waiting=None):
    state = {}
    if waiting:
        state["waiting"] = {"reason": waiting, "message": f"{waiting} detail"}
    if terminated:
        state["terminated"] = {"reason": terminated, "exitCode": 1}
    if ready:
        state = {"running": {"startedAt": "now"}}
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": "0/3 nodes are available"})
    status = {"phase": "Running" if ready else phase, "conditions": conditions,
              "containerStatuses": [{"name": "app", "state": state, "restartCount": restarts,
                                     "ready": ready}]}
    if init_waiting:
        status["initContainerStatuses"] = [{"name": "init", "restartCount": 0,
                                            "state": {"waiting": {"reason": init_waiting}}}]
    meta = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"containers": [{"name": "app", "image": image}]},
            "status": status}


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff",
                                    "CreateContainerConfigError", "InvalidImageName",
                                    "CreateContainerError", "RunContainerError"])
def test_fatal_waiting_reasons(reason):
    problems = pod_problems(pod(waiting=reason, restarts=2))
    assert [(p.reason, p.fatal, p.container) for p in problems] == [(reason, True, "app")]
    assert problems[0].describe().startswith(f"web-1/app: {reason} (")


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing"])
def test_ordinary_waiting_is_not_a_problem(reason):
    assert pod_problems(pod(waiting=reason)) == []


def test_terminated_with_restarts_is_a_crash_loop():
    [problem] = pod_problems(pod(terminated="OOMKilled", restarts=1))
    assert problem.reason == "CrashLoopBackOff" and problem.fatal
    assert "OOMKilled" in problem.message


def test_terminated_without_restart_yet_is_not_judged():
    assert pod_problems(pod(terminated="Error", restarts=0)) == []


def test_init_container_problems_count():
    [problem] = pod_problems(pod(init_waiting="ImagePullBackOff"))
    assert problem.container == "init" and problem.fatal


def test_unschedulable_is_reported_but_not_fatal():
    [problem] = pod_problems(pod(unschedulable=True))
    assert problem.reason == "Unschedulable" and not problem.fatal


def test_failed_pod_phase_is_fatal():
    p = pod()
    p["status"]["phase"] = "Failed"
    p["status"]["reason"] = "Evicted"
    assert [(x.reason, x.fatal) for x in pod_problems(p)] == [("Evicted", True)]


def test_terminating_pod_is_never_a_problem():
    assert pod_problems(pod(waiting="CrashLoopBackOff", deleting=True)) == []


def test_pod_ready():
    assert pod_ready(pod(ready=True))
    assert not pod_ready(pod(ready=False, phase="Running"))
    assert not pod_ready(pod(ready=True, deleting=True))


def test_verify_pods():
    good = [pod(f"w{i}", ready=True) for i in range(3)]
    assert verify_pods(good, (IMAGE,), 3) is None
    # Old pods with another image are not counted, either way.
    assert verify_pods(good + [pod("old", image="reg/app:v1")], (IMAGE,), 3) is None
    assert verify_pods(good[:2], (IMAGE,), 3) == "only 2 of 3 pods run reg/app:v2"
    bad = good[:2] + [pod("w9", phase="Running")]
    assert verify_pods(bad, (IMAGE,), 3) == "1 pod(s) not Running and Ready: w9"
    # A terminating pod is neither counted nor blamed.
    assert verify_pods(good + [pod("gone", deleting=True)], (IMAGE,), 3) is None


def test_verify_pods_says_the_same_of_pod_summaries():
    """A rollout keeps only `pod_summary` of each pod its watch shows: the verdicts on
    the summaries are the verdicts on the whole pods."""
    good = [pod(f"w{i}", ready=True) for i in range(3)]
    cases = [good, good + [pod("old", image="reg/app:v1")], good[:2],
             good[:2] + [pod("w9", phase="Running")], good + [pod("gone", deleting=True)],
             good[:2] + [pod("w8", ready=False, phase="Pending")]]
    for pods in cases:
        assert verify_pods([pod_summary(p) for p in pods], (IMAGE,), 3) == \
            verify_pods(pods, (IMAGE,), 3)
        assert [pod_ready(pod_summary(p)) for p in pods] == [pod_ready(p) for p in pods]


def test_fail_fast_waits_for_the_grace():
    ff = FailFast((IMAGE,), grace=5)
    ff.observe(pod(waiting="ErrImagePull"), now=100)
    assert ff.verdict(104) is None and ff.pending().reason == "ErrImagePull"
    # The reason flips to the back-off; the clock keeps running from the first sighting.
    ff.observe(pod(waiting="ImagePullBackOff"), now=103)
    problem = ff.verdict(105)
    assert problem is not None and problem.reason == "ImagePullBackOff"


def test_fail_fast_forgets_a_pod_that_recovers_or_goes():
    ff = FailFast((IMAGE,), grace=5)
    ff.observe(pod(waiting="ErrImagePull"), now=100)
    ff.observe(pod(ready=True), now=102)
    assert ff.verdict(200) is None and ff.pending() is None
    ff.observe(pod(waiting="CrashLoopBackOff", restarts=3), now=110)
    ff.observe(pod(waiting="CrashLoopBackOff", restarts=3), now=111, deleted=True)
    assert ff.verdict(200) is None


def test_fail_fast_ignores_pods_of_other_images():
    ff = FailFast((IMAGE,), grace=0)
    ff.observe(pod(image="reg/app:v1", waiting="CrashLoopBackOff", restarts=9), now=1)
    assert ff.verdict(100) is None

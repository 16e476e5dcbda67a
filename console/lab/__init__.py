"""The local lab: real Kubernetes control planes built from their Go modules (`make bin`).

    fleet.py       LabFleet: start/stop, kubeconfigs and the rewritten clusters.yaml, tokens
    components.py  the command line of each component (etcd, kube-apiserver, ...)
    pki.py         the lab's CA, certificates and service-account key
    stages.py      KWOK's Stages for nodes and pods, from the fleet file's `sim:` settings
    processes.py   child processes: logs, death with the parent, stopping

`release-console lab up` (console/cli/lab_cmd.py) serves a lab in the foreground.
"""

from __future__ import annotations

from console.lab.fleet import LabError, LabFleet

__all__ = ["LabError", "LabFleet"]

"""The local fleet: simulated Kubernetes clusters that real kubectl and the `kubernetes` client accept.

One asyncio loop in a background thread serves every cluster of a `SimFleet`, each on its
own loopback port over HTTPS (one CA per fleet) with its own tokens, store, controllers,
counters and faults, plus a demo OCI registry. Modules:

    fleet.py       SimFleet: start/stop, kubeconfigs, faults, kill/revive
    fleetfile.py   DIR/<id>.yaml and the rewritten clusters.yaml (shared with console.lab)
    cluster.py     one cluster's state: store, controller, tokens, counters, nodes
    server.py      the HTTP entry: routing, authentication, RBAC, injected faults, discovery, admin
    resources.py   resource requests: CRUD, patches, server-side apply, lists, watches, reviews
    watch.py       watch streams: initial events, 410 Gone, bookmarks, changes
    api.py         Status errors, replies, request bodies, what a URL addresses
    store.py       objects, resourceVersions, the event backlog, watchers, selectors
    controller.py  the control plane's timers and store listener, Events, the ReplicaSet controller
    deployments.py the deployment controller (rollouts, revisions, conditions)
    kubelet.py     scheduling and pod life cycles (ready, never-pulling, crash-looping)
    admission.py   defaults and validation
    patch.py       JSON patch, merge patch, strategic merge, apply
    protobuf.py    the protobuf request bodies kubectl's generators send
    discovery.py   the served resource types and discovery documents
    openapi.py     the minimal OpenAPI v3 kubectl apply --server-side needs
    tables.py      Table responses for kubectl get
    rbac.py        token rules
    registry.py    the demo OCI registry
    faults.py      the settings (and their documentation), per cluster
    tls.py         the fleet CA and serving certificate (the lab makes its CA here too)
    objects.py     small helpers over stored objects
"""

from __future__ import annotations

from console.sim.fleet import ClusterSpec, SimFleet

__all__ = ["ClusterSpec", "SimFleet"]

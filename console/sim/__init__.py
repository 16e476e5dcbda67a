"""The local fleet: simulated Kubernetes clusters that real kubectl and the `kubernetes` client accept.

One asyncio loop in a background thread serves every cluster of a `SimFleet`, each on its
own loopback port over HTTPS (one CA per fleet) with its own tokens, store, rollout
controller, counters and faults. See `fleet.py` for the Python API, `faults.py` for the
fault settings, `server.py` and `resources.py` for the HTTP surface.
"""

from __future__ import annotations

from console.sim.fleet import ClusterSpec, SimFleet

__all__ = ["ClusterSpec", "SimFleet"]

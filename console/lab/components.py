"""Command lines of the lab's real components, one function each.

Every component listens on 127.0.0.1 only. kube-apiserver serves TLS from the lab's CA,
authenticates clients by certificate (the lab's CA) and service-account tokens it signs
itself, and authorises with `Node,RBAC`. The controller-manager runs the controllers a
release depends on (deployments, replica sets, namespaces, garbage collection, service
accounts and their tokens, the root CA config map, pod GC, node life cycle) with one ServiceAccount per
controller, as kubeadm sets it up; scheduler and controller-manager serve no port of their
own (`--secure-port=0`): the lab talks only to kube-apiserver.
"""

from __future__ import annotations

from pathlib import Path

from console.lab.pki import LabPKI

CONTROLLERS = ("deployment-controller", "replicaset-controller", "namespace-controller",
               "garbage-collector-controller", "serviceaccount-controller",
               "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
               "pod-garbage-collector-controller", "clusterrole-aggregation-controller",
               # Lifts the not-ready taint kube-apiserver puts on new nodes once KWOK
               # reports them Ready (and taints nodes whose lease KWOK stops renewing).
               "node-lifecycle-controller")
SERVICE_CIDR = "10.0.0.0/24"


def etcd(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    """One etcd member on loopback; `--unsafe-no-fsync` because a lab's data is scratch
    (it dies with the lab) and fsyncs dominate etcd's latency on a busy disk."""
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [str(binary), "--name", "lab", "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"lab={peer}", "--unsafe-no-fsync",
            "--listen-metrics-urls", "", "--log-level", "warn",
            "--quota-backend-bytes", str(2 * 1024**3), "--snapshot-count", "10000"]


def kube_apiserver(binary: Path, pki: LabPKI, port: int, etcd_url: str, etcd_prefix: str,
                   cluster_id: str) -> list[str]:
    """kube-apiserver for one cluster: TLS, client certificates, SA tokens, Node,RBAC."""
    p = pki.path
    return [str(binary),
            "--bind-address", "127.0.0.1", "--secure-port", str(port),
            "--advertise-address", "127.0.0.1",
            # 127.0.0.1 may not be an Endpoints address: keep the `kubernetes` Service's
            # endpoints out of the loop (nothing in the lab reaches the API from a pod).
            "--endpoint-reconciler-type", "none",
            "--etcd-servers", etcd_url, "--etcd-prefix", etcd_prefix,
            "--tls-cert-file", str(p("server.crt")), "--tls-private-key-file", str(p("server.key")),
            "--client-ca-file", str(p("ca.crt")),
            "--authorization-mode", "Node,RBAC",
            "--service-account-issuer", f"https://{cluster_id}.lab.release-console.local",
            "--service-account-key-file", str(p("sa.pub")),
            "--service-account-signing-key-file", str(p("sa.key")),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--allow-privileged=false", "--profiling=false",
            # One client (a console) per cluster: API priority and fairness only costs memory
            # and start-up time here.
            "--enable-priority-and-fairness=false",
            "--v", "1"]


def kube_controller_manager(binary: Path, pki: LabPKI, kubeconfig: Path) -> list[str]:
    """kube-controller-manager for one cluster (its own identity, one SA per controller)."""
    return [str(binary), "--kubeconfig", str(kubeconfig),
            "--controllers", ",".join(CONTROLLERS),
            "--use-service-account-credentials=true",
            "--service-account-private-key-file", str(pki.path("sa.key")),
            "--root-ca-file", str(pki.path("ca.crt")),
            "--leader-elect=false", "--secure-port", "0",
            # Snappy syncs: a release waits on these controllers.
            "--concurrent-deployment-syncs", "5", "--concurrent-replicaset-syncs", "5",
            "--v", "1"]


def kube_scheduler(binary: Path, kubeconfig: Path) -> list[str]:
    """kube-scheduler for one cluster."""
    return [str(binary), "--kubeconfig", str(kubeconfig), "--leader-elect=false",
            "--secure-port", "0", "--v", "1"]


def kwok(binary: Path, kubeconfig: Path, config: Path, cidr: str) -> list[str]:
    """KWOK for one cluster: manages the nodes annotated kwok.x-k8s.io/node=fake."""
    return [str(binary), "--kubeconfig", str(kubeconfig), "--config", str(config),
            "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
            "--cidr", cidr, "--node-lease-duration-seconds", "40"]

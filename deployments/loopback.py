"""Keep Serve replicas' inter-deployment gRPC servers on loopback on a local node.

Ray Serve 2.60 starts a gRPC server in every replica bound to `[::]:0` (hard-coded in
`ray/serve/_private/replica.py`), i.e. on every interface of the machine. On a local
single-node cluster (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, node address 127.0.0.1)
nothing but this machine ever calls it, so we bind it to 127.0.0.1 instead. On KubeRay
(where that variable is never set) replicas on other pods must reach it: left alone.

`cluster.local.start_platform` installs this as Ray's `worker_process_setup_hook`, so it
runs in every worker before a replica starts; importing a deployment module is not
enough, since Serve may unpickle a deployment class without importing its module.
"""

from __future__ import annotations

import os


def bind_replica_grpc_to_loopback() -> bool:
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        return False
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "_stratmaster_loopback", False):
        return True

    def add_port(server, address: str) -> int:
        return original(server, address.replace("[::]:", "127.0.0.1:"))

    add_port._stratmaster_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port
    return True

"""Process supervision for ``meshserve up``: the instance processes it runs
as children (restarted with backoff, stopped with a drain), the runtime
pools its controller sizes, ``--instances N`` sharing one address, and the
private etcd they coordinate through.

Layered above :mod:`meshserve.server`: it runs ``serve_instance`` in this
process, or ``meshserve instance`` children that do.
"""

from meshserve.supervisor._children import InstanceChild, start_failure
from meshserve.supervisor._cluster import ClusterEndpoints, run_cluster
from meshserve.supervisor._local_etcd import local_etcd
from meshserve.supervisor._pools import LocalPools
from meshserve.supervisor._ports import free_port
from meshserve.supervisor._up import run_with_pools

__all__ = [
    "ClusterEndpoints",
    "InstanceChild",
    "LocalPools",
    "free_port",
    "local_etcd",
    "run_cluster",
    "run_with_pools",
    "start_failure",
]

"""A pipeline whose keys one node serves, sent over that node's own connection as a plain pipeline.

The cluster client's pipeline finds a slot and a node for each command, then groups, sends and reads them back: CPU
a plain pipeline does not spend, and a chat turn makes two before it answers (its reads, and its writes). One user's
keys share a slot, and ElastiCache Serverless serves every slot at one endpoint, so those pipelines go to one node.

A command the node turns away because its slot is elsewhere now or for a moment (MOVED, ASK, TRYAGAIN, CLUSTERDOWN: a
resharding, a failover) did not run: it alone is sent again through the cluster client, which follows the redirect and
learns the new layout. Nothing that ran is sent twice. Keys served by more than one node, or a client that is not a
cluster's, get the client's own pipeline.
"""

from __future__ import annotations

from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import AskError, ClusterDownError, RedisClusterException, TryAgainError

# MovedError is an AskError.
TURNED_AWAY = (AskError, TryAgainError, ClusterDownError)


def pipeline(valkey, keys: list[str]):
    """A pipeline (no transaction) for commands on `keys`: over the one node that serves them all when there is one,
    else the client's own."""
    if not isinstance(valkey, RedisCluster) or not keys:
        return valkey.pipeline(transaction=False)
    try:
        nodes = [valkey.get_node_from_key(key) for key in keys]
    except RedisClusterException:  # a slot no node covers, as far as the client knows: it finds out
        return valkey.pipeline(transaction=False)
    node = nodes[0]
    if any(other.name != node.name for other in nodes[1:]):
        return valkey.pipeline(transaction=False)
    return OneNodePipeline(valkey, valkey.get_redis_connection(node).pipeline(transaction=False))


class OneNodePipeline:
    """A node's plain pipeline, whose commands the node turned away are sent again through the cluster client."""

    def __init__(self, cluster: RedisCluster, pipe):
        self._cluster, self._pipe = cluster, pipe

    def __getattr__(self, name: str) -> Any:  # the commands (get, lrange, set, execute_command...)
        return getattr(self._pipe, name)

    def execute(self) -> list[Any]:
        """The results in order, as the cluster client's pipeline gives them; raises the first error of a command."""
        sent = list(self._pipe.command_stack)
        results = self._pipe.execute(raise_on_error=False)
        for i, result in enumerate(results):
            if isinstance(result, TURNED_AWAY):
                args, options = sent[i]
                results[i] = self._cluster.execute_command(*args, **options)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

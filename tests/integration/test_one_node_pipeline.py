"""A pipeline of keys one node serves goes over that node's own connection, gives what the cluster client's pipeline
gives, and a command the node turns away (its slot moved) is sent again alone through the cluster client: nothing runs
twice, and an error of a command is still raised."""

from __future__ import annotations

import uuid

import pytest
import redis
from redis.client import Pipeline
from redis.cluster import RedisCluster
from redis.exceptions import MovedError, ResponseError

from reverie.cache import keys, one_node

pytestmark = pytest.mark.integration


def user_keys(project_id: str) -> list[str]:
    user = f"u-{uuid.uuid4().hex[:8]}"
    return [keys.narrative(project_id, user), keys.session(project_id, user, "s1"),
            keys.pending_turns(project_id, user)]


def fill(pipe, names: list[str]) -> None:
    pipe.set(names[0], "story")
    pipe.rpush(names[1], "a", "b")
    pipe.get(names[0])
    pipe.lrange(names[1], 0, -1)
    pipe.lrange(names[2], 0, -1)


def test_one_users_keys_go_over_their_nodes_connection_with_the_cluster_pipelines_results(clients, project):
    valkey = clients.valkey
    assert isinstance(valkey, RedisCluster)
    mine, theirs = user_keys(project.project_id), user_keys(project.project_id)
    pipe = one_node.pipeline(valkey, mine)
    assert isinstance(pipe, one_node.OneNodePipeline)
    fill(pipe, mine)
    cluster_pipe = valkey.pipeline(transaction=False)
    fill(cluster_pipe, theirs)
    assert pipe.execute() == cluster_pipe.execute() == [True, 2, b"story", [b"a", b"b"], []]


def test_a_client_that_is_not_a_clusters_gets_its_own_pipeline(clients):
    node = clients.valkey.get_nodes()[0]
    with redis.Redis(host=node.host, port=node.port) as plain:
        assert isinstance(one_node.pipeline(plain, ["a"]), Pipeline)
    assert not isinstance(one_node.pipeline(clients.valkey, []), one_node.OneNodePipeline)


def test_a_command_the_node_turns_away_is_sent_again_alone_and_nothing_runs_twice(clients, project, monkeypatch):
    valkey, names = clients.valkey, user_keys(project.project_id)
    real = Pipeline.execute

    def second_turned_away(self, raise_on_error=True):
        # As a node whose slot moved answers: the second command does not run, and comes back as MOVED.
        node = valkey.get_node_from_key(names[1])
        kept = self.command_stack.pop(1)
        results = real(self, raise_on_error)
        assert kept[0][0] == "RPUSH"
        return [results[0], MovedError(f"{valkey.keyslot(names[1])} {node.host}:{node.port}"), *results[1:]]

    pipe = one_node.pipeline(valkey, names)
    monkeypatch.setattr(Pipeline, "execute", second_turned_away)
    fill(pipe, names)
    results = pipe.execute()
    monkeypatch.undo()
    # The RPUSH ran once, through the cluster client, and its result is in its place; the GET that followed it in
    # the pipeline ran before it, so it finds the value, and the LRANGE ran before it too.
    assert results == [True, 2, b"story", [], []]
    assert valkey.lrange(names[1], 0, -1) == [b"a", b"b"]


def test_an_error_of_a_command_is_raised_as_the_cluster_pipeline_raises_it(clients, project):
    valkey, names = clients.valkey, user_keys(project.project_id)
    valkey.set(names[1], "not a list")
    pipe = one_node.pipeline(valkey, names)
    pipe.rpush(names[1], "a")
    pipe.set(names[0], "story")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        pipe.execute()
    assert valkey.get(names[0]) == b"story"  # a pipeline is not a transaction: the rest ran

"""`reverie reembed` against the running local stack: a project whose memories carry another model's vectors is
embedded again through the admin function, with a progress line and a summary, and searched by cosine again."""

from __future__ import annotations

import secrets

import pytest

from reverie_dev import cli
from tests.support.memories import remember

pytestmark = pytest.mark.e2e


def test_reembed_moves_a_project_to_the_deployed_model_and_says_so(stack, capsys):
    made = stack.invoke("AdminFunction", {"action": "project.create", "project_id": "re-" + secrets.token_hex(4)})
    project = made["project_id"]
    db = stack.clients.db
    ids = [remember(stack.clients, project, "ana", f"Ana's journal entry {i} about the sea") for i in range(5)]
    with db.transaction(project) as conn, conn.cursor() as cur:
        cur.execute("UPDATE memories SET embedding_model = 'old-embedder-v0' WHERE project_id = %s", (project,))

    code = cli.main(["reembed", "--project", project, "--batch", "2", "--data-dir", str(stack.data_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"Project {project}: 5 memories embedded again with offline-hash-embed-v1; 0 left" in out
    assert "re-embedding with offline-hash-embed-v1: 5 memories" in err  # the progress line's head, off a terminal
    with db.read(project, cursor_factory=None) as cur:
        cur.execute("SELECT DISTINCT embedding_model FROM memories WHERE project_id = %s", (project,))
        assert cur.fetchall() == [("offline-hash-embed-v1",)]
    assert len(ids) == 5

    unknown = cli.main(["reembed", "--project", "no-such-project", "--data-dir", str(stack.data_dir)])
    _, err = capsys.readouterr()
    assert unknown != 0 and err.startswith("error: ") and err.count("\n") == 1 and "project create" in err

"""Job markers (what lets status say "queued") are found per user, and ':' in ids never widens a forget."""

from reverie.cache import job_markers, keys
from reverie.domain.memory import Turn
from reverie.jobs.message import make_job


def _job(project_id, user_id):
    return make_job(project_id=project_id, user_id=user_id, session_id="s1",
                         turns=[Turn(role="user", content="hello")])


def test_forgetting_a_user_removes_only_that_users_markers(clients, project):
    p = project.project_id
    ana, ana_work, other_project = _job(p, "ana"), _job(p, "ana:work"), _job(f"{p}:b", "ana")
    for job in (ana, ana_work, other_project):
        job_markers.remember(clients.valkey, job)
    assert job_markers.known(clients.valkey, p, ana.job_id)["user_id"] == "ana"

    assert job_markers.forget_user(clients.valkey, p, "ana") == 2  # the marker and the user's index
    assert job_markers.known(clients.valkey, p, ana.job_id) is None
    assert job_markers.known(clients.valkey, p, ana_work.job_id)["user_id"] == "ana:work"
    assert job_markers.known(clients.valkey, f"{p}:b", other_project.job_id)["user_id"] == "ana"


def test_marker_keys_of_different_ids_never_collide():
    assert keys.job_marker("a:b", "c") != keys.job_marker("a", "b:c")
    assert keys.user_jobs("a:b", "c") != keys.user_jobs("a", "b:c")

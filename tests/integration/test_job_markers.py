"""Job markers (what lets status say "queued") are found per user, and ':' in ids never widens a forget."""

from reverie.cache import job_markers, keys, users
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

    # the user's index (one key of the user) and the marker
    assert users.delete_user(clients.valkey, p, "ana") == {"user_keys": 1, "job_markers": 1}
    assert job_markers.known(clients.valkey, p, ana.job_id) is None
    assert job_markers.known(clients.valkey, p, ana_work.job_id)["user_id"] == "ana:work"
    assert job_markers.known(clients.valkey, f"{p}:b", other_project.job_id)["user_id"] == "ana"


def test_marker_keys_of_different_ids_never_collide():
    assert keys.job_marker("a:b", "c") != keys.job_marker("a", "b:c")
    assert keys.user_jobs("a:b", "c") != keys.user_jobs("a", "b:c")


def test_a_refused_job_keeps_its_marker_with_the_reason(clients, project):
    job = _job(project.project_id, "ana")
    job_markers.remember(clients.valkey, job)
    job_markers.mark_refused(clients.valkey, project.project_id, job.job_id, "the message is too large")
    marker = job_markers.known(clients.valkey, project.project_id, job.job_id)
    assert marker["user_id"] == "ana" and marker["refused"] == "the message is too large"
    assert clients.valkey.ttl(keys.job_marker(project.project_id, job.job_id)) > 0

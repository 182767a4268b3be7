"""Narrative jobs and the narrative's hot copy, from the producers' side (the API, the chat, the sweeps, the admin
function) and the worker's.

A narrative job is queued to the narrative queue, where the narrative worker writes a new version. One job is
pending per user at most: a request that finds one pending names it instead of queueing another
(reverie.cache.narratives' guard). The narrative itself is read from its hot copy in Valkey, Postgres only on a
miss; the worker refreshes the copy when it writes a version, a forget deletes it, a memory's delete drops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from reverie.cache import VALKEY_ERRORS, job_markers, users
from reverie.cache import narratives as hot
from reverie.domain.errors import ServiceUnavailable, UserForgotten
from reverie.domain.fields import utcnow
from reverie.jobs.message import JobRefused, NarrativeJob, check_fits
from reverie.platform.observability import logger
from reverie.store import narratives

SEND_ERRORS = (BotoCoreError, ClientError)


@dataclass(frozen=True)
class Requested:
    job_id: str
    queued: bool  # False: a job was pending already, and job_id names it


# ---------------------------------------------------------------- queueing


def request(clients, project_id: str, user_id: str, reason: str, *, began_at: float | None = None,
            later: Callable[..., Any] | None = None, unguarded: bool = True) -> Requested | None:
    """Queue a narrative job for the user unless one is pending (then name that one). `later` (e.g.
    after_response.defer) sends it after the response instead of now. Without Valkey (no guard) the job is queued
    anyway, unless `unguarded` is False: then None, and nothing is queued. Raises UserForgotten when the user was
    forgotten after `began_at` (the request's start), ServiceUnavailable when the queue cannot take it."""
    job = NarrativeJob(project_id=project_id, user_id=user_id, reason=reason)
    began = time.time() if began_at is None else began_at
    try:
        pending = _claim(clients.valkey, job, began)
    except VALKEY_ERRORS as exc:
        # Without the guard a second job may be queued (the worker writes versions in order), and no marker
        # says it is queued until the worker records its outcome.
        if not unguarded:
            return None
        logger.warning("narrative guard unavailable; queueing without it", extra={"error": type(exc).__name__})
        pending = None
    if pending is not None:
        return Requested(pending, queued=False)
    if later is not None:
        later(send_claimed, clients, job)
        return Requested(job.job_id, queued=True)
    try:
        send(clients, job)
    except JobRefused:
        _unclaim(clients, job)
        raise
    except SEND_ERRORS as exc:
        _unclaim(clients, job)
        raise ServiceUnavailable("could not queue the narrative job; try again") from exc
    return Requested(job.job_id, queued=True)


def _claim(valkey, job: NarrativeJob, began: float) -> str | None:
    """Make the job the user's pending one and leave its marker; None when it is, else the pending job's id."""
    for _ in range(3):  # the pending one may finish between the claim and the read
        writes = users.UserWrites(valkey, job.project_id, job.user_id, began)
        hot.claim(writes, job.project_id, job.user_id, job.job_id)
        written = writes.execute()
        if written is None:
            raise UserForgotten("the user was forgotten while this was being asked; nothing was queued")
        if written[0]:
            marker = users.UserWrites(valkey, job.project_id, job.user_id, began)
            job_markers.remember_narrative(marker, job)
            marker.execute()
            return None
        found = hot.pending(valkey, job.project_id, job.user_id)
        if found:
            return found
    raise ServiceUnavailable("the user's narrative job kept changing while this was being asked; try again")


def send(clients, job: NarrativeJob) -> None:
    body = job.model_dump_json()
    check_fits(body, job.group_id)
    clients.sqs.send_message(QueueUrl=clients.settings.narrative_queue_url, MessageBody=body,
                             MessageGroupId=job.group_id, MessageDeduplicationId=job.job_id)


def send_claimed(clients, job: NarrativeJob) -> None:
    """Send a claimed job after the response: if the queue cannot take it, the guard is let go (the next read of
    a stale narrative asks again), and the failure logged."""
    try:
        send(clients, job)
    except (*SEND_ERRORS, JobRefused) as exc:
        logger.warning("narrative job not queued; the next request asks again",
                       extra={"job_id": job.job_id, "error": type(exc).__name__})
        _unclaim(clients, job)


def _unclaim(clients, job: NarrativeJob) -> None:
    try:
        hot.release(clients.valkey, job.project_id, job.user_id, job.job_id)
        job_markers.drop(clients.valkey, job.project_id, job.job_id)
    except VALKEY_ERRORS:
        pass  # the guard expires on its own


def pending(clients, project_id: str, user_id: str) -> str | None:
    """The user's pending narrative job, if any (None too when Valkey cannot say)."""
    try:
        return hot.pending(clients.valkey, project_id, user_id)
    except VALKEY_ERRORS:
        return None


def finished(clients, job: NarrativeJob) -> None:
    """The worker is done with the job (written, nothing to write, or dead): the next request may queue one."""
    try:
        hot.release(clients.valkey, job.project_id, job.user_id, job.job_id)
    except VALKEY_ERRORS as exc:
        logger.warning("narrative guard not released; it expires on its own", extra={"error": type(exc).__name__})


# ---------------------------------------------------------------- the hot copy


def current(clients, project_id: str, user_id: str, *, began_at: float | None = None,
            copy: hot.Hot | None = None) -> dict[str, Any] | None:
    """The user's newest narrative {text, version, generated_at, citations}, or None: from the hot copy (or its mark
    that there is none), else from Postgres (and the copy filled with what it found, unless a forget since
    `began_at` or a delete's mark says not to). The mark that there is none is left by a chat turn that is kept
    (reverie.chat.turn), not by a read: the user may have been forgotten, or the turn may fail. `copy`: the hot copy
    as the caller read it already (reverie.cache.recall_reads)."""
    began = time.time() if began_at is None else began_at
    if copy is None:
        try:
            copy = hot.read(clients.valkey, project_id, user_id)
        except VALKEY_ERRORS:
            copy = hot.UNREADABLE
    if copy.state is hot.State.FOUND:
        return copy.narrative
    if copy.state is hot.State.NONE:
        return None
    latest = narratives.latest(clients.db, project_id, user_id)
    if copy.state is hot.State.MISS and latest is not None:
        _write(clients, project_id, user_id, latest, began, fill=True)
    return latest


def for_recall(clients, project_id: str, user_id: str, *, later: Callable[..., Any] | None = None,
               copy: hot.Hot | None = None) -> dict[str, Any] | None:
    """The narrative a reply is built from: `current` (from `copy`, the hot copy as read, if given), stale or not. A
    stale one is used, and its regeneration queued (sent by `later`, e.g. after the response) unless one is pending.
    Never raises for the queueing."""
    began = time.time()
    story = current(clients, project_id, user_id, began_at=began, copy=copy)
    if story is not None and is_stale(clients.settings, story):
        try:
            # Without the guard every turn would queue one: then it waits for the weekly sweep.
            request(clients, project_id, user_id, "stale", began_at=began, later=later, unguarded=False)
        except Exception as exc:  # the reply goes on with what it has
            logger.warning("stale narrative not queued for regeneration", extra={"error": type(exc).__name__})
    return story


def is_stale(settings, story: dict[str, Any]) -> bool:
    return story["generated_at"] < utcnow() - timedelta(days=settings.narrative_max_age_days)


def refresh(clients, job: NarrativeJob, story: dict[str, Any]) -> None:
    """The worker wrote a version: put it in the hot copy (unless the user was forgotten since the job was made)."""
    _write(clients, job.project_id, job.user_id, story, job.created_at.timestamp(), fill=False)


def drop(clients, project_id: str, user_id: str, *, began_at: float) -> None:
    """A memory of the user is being deleted, and the narratives quoting it with it: mark the copy dropped (see
    reverie.cache.narratives). Raises ServiceUnavailable when Valkey cannot take the mark."""
    try:
        writes = users.UserWrites(clients.valkey, project_id, user_id, began_at)
        hot.drop(writes, project_id, user_id)
        writes.execute()
    except VALKEY_ERRORS as exc:
        raise ServiceUnavailable("the narrative cache could not be cleared; repeat the request") from exc


def _write(clients, project_id: str, user_id: str, story: dict[str, Any], began: float, *, fill: bool) -> None:
    try:
        writes = users.UserWrites(clients.valkey, project_id, user_id, began)
        hot.write(writes, project_id, user_id, story, fill=fill)
        writes.execute()
    except VALKEY_ERRORS as exc:
        logger.warning("narrative hot copy not written", extra={"fill": fill, "error": type(exc).__name__})

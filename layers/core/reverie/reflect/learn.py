"""One user's jobs in one tier, learned at most once: the memory changes, the memory events, one outcome
row per job, the ledger rows of the calls that paid for them and the jobs' release from the reflection
window commit in one transaction."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from aws_lambda_powertools.metrics import MetricUnit

from reverie.domain.outcomes import TierOutcome
from reverie.domain.tiers import Tier, TierStatus
from reverie.jobs.message import ReflectionJob
from reverie.llm.meter import Meter
from reverie.platform.deadline import Deadline
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics
from reverie.reflect import episodic, procedural, semantic, triage
from reverie.reflect.plan import Change, Plan
from reverie.store import held_jobs, llm_usage, memories, processed_jobs, tombstones

PLANNERS = {Tier.EPISODIC: episodic.plan, Tier.SEMANTIC: semantic.plan, Tier.PROCEDURAL: procedural.plan}
# What a job the tier found nothing in records (the same whether the model or the cheap check found nothing).
NOTHING = {Tier.EPISODIC: episodic.NOTHING, Tier.SEMANTIC: semantic.NOTHING, Tier.PROCEDURAL: procedural.NOTHING}
FINAL = ("done", "empty")


class ReflectionRaced(RuntimeError):
    """Another delivery of these jobs committed while this one was thinking: retry, and it will skip them."""


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:12]


def learn(clients, tier: Tier, jobs: Sequence[ReflectionJob], meter: Meter | None = None,
          deadline: Deadline | None = None) -> dict[str, TierOutcome]:
    """Reflect the jobs (all of one project and user, in order) and return the outcome of those applied now.

    Jobs already done or empty in this tier are skipped without any model call. Jobs made before their user
    was forgotten are dropped and leave nothing that names the user: no memory, no outcome row (the forget
    removed those too), and the calls already spent on them go to the ledger for the project only.
    """
    tier = Tier(tier)
    if not jobs:
        return {}
    project_id, user_id = jobs[0].project_id, jobs[0].user_id
    if any(j.project_id != project_id or j.user_id != user_id for j in jobs):
        raise ValueError("a user batch holds the jobs of one project and user")
    budget = clients.settings.reflect_call_timeout_s
    meter = meter or Meter(clients.llm, lambda purpose: deadline.budget(budget) if deadline is not None else budget)
    db = clients.db

    with db.transaction(project_id) as conn, conn.cursor() as cur:
        known = processed_jobs.statuses(cur, project_id, tier, [j.job_id for j in jobs])
        forgotten = tombstones.forgotten_at(cur, project_id, user_id)
    pending = [j for j in jobs if known.get(j.job_id) not in FINAL]
    if not pending:
        with db.transaction(project_id) as conn, conn.cursor() as cur:
            held_jobs.release(cur, project_id, tier, [j.job_id for j in jobs])
        return {}
    live = _not_forgotten(pending, forgotten)

    try:
        plan = _plan(clients, meter, tier, project_id, user_id, live)
        with db.transaction(project_id) as conn, conn.cursor() as cur:
            # The forget cascade takes this lock too: once we hold it, a forget either committed (and we
            # see its tombstone below) or waits for our commit (and then deletes what we wrote).
            tombstones.lock_user_tier(cur, project_id, user_id, tier)
            live = _still_live(cur, tier, pending, project_id, user_id)
            results = apply(cur, tier, project_id, user_id, plan.only({j.job_id for j in live}), live)
            processed_jobs.write_outcomes(cur, project_id, user_id, tier, results)
            held_jobs.release(cur, project_id, tier, [j.job_id for j in jobs])
            calls = meter.take()
            if live:
                llm_usage.record(cur, project_id, user_id, tier.value, [j.job_id for j in live], calls)
            else:
                llm_usage.record(cur, project_id, None, tier.value, [], calls)
    except Exception:
        _record_spent(db, tier, project_id, user_id, pending, meter)
        raise
    dropped = len(pending) - len(live)
    if dropped:
        logger.info("jobs of a forgotten user dropped", extra={"tier": tier.value, "jobs": dropped,
                                                               "user_hash": user_hash(user_id)})
        metrics.add_metric(name=Metric.FORGOTTEN_JOBS_DROPPED, unit=MetricUnit.Count, value=dropped)
    logger.info("reflected", extra={
        "tier": tier.value, "user_hash": user_hash(user_id), "jobs": len(live), "dropped": dropped,
        "skipped": len(jobs) - len(pending), "added": sum(o.added for o in results.values()),
        "updated": sum(o.updated for o in results.values()),
        "superseded": sum(o.superseded for o in results.values()),
    })
    return results


def _plan(clients, meter: Meter, tier: Tier, project_id: str, user_id: str, jobs: Sequence[ReflectionJob]) -> Plan:
    """The tier's plan for the jobs; without a model call when the cheap check finds nothing it could learn."""
    if not jobs:
        return Plan()
    if clients.settings.reflect_cheap_check and not triage.worth_a_call(tier, jobs):
        logger.info("nothing to learn: no model call", extra={"tier": tier.value, "jobs": len(jobs),
                                                               "user_hash": user_hash(user_id)})
        metrics.add_metric(name=Metric.REFLECTION_CALLS_SPARED, unit=MetricUnit.Count, value=1)
        return Plan(nothing_reason=NOTHING[tier])
    return PLANNERS[tier](meter, clients.db, project_id, user_id, jobs)


def _not_forgotten(jobs: Sequence[ReflectionJob], forgotten: datetime | None) -> list[ReflectionJob]:
    return [j for j in jobs if forgotten is None or j.created_at > forgotten]


def _still_live(cur, tier: Tier, pending, project_id: str, user_id: str) -> list[ReflectionJob]:
    """Under the lock: the pending jobs not forgotten meanwhile. If another delivery applied any of them
    while we were thinking, start over (the retry skips them)."""
    now = processed_jobs.statuses(cur, project_id, tier, [j.job_id for j in pending])
    if any(now.get(j.job_id) in FINAL for j in pending):
        raise ReflectionRaced("jobs of this batch were applied by another delivery meanwhile")
    return _not_forgotten(pending, tombstones.forgotten_at(cur, project_id, user_id))


def _record_spent(db, tier: Tier, project_id: str, user_id: str, jobs, meter: Meter) -> None:
    """The calls made before a failure were paid for: they go to the ledger even though nothing is learned
    (for the project only when the user has been forgotten since)."""
    calls = meter.take()
    if not calls:
        return
    try:
        with db.transaction(project_id) as conn, conn.cursor() as cur:
            kept = _not_forgotten(jobs, tombstones.forgotten_at(cur, project_id, user_id))
            llm_usage.record(cur, project_id, user_id if kept else None, tier.value, [j.job_id for j in kept], calls)
    except Exception:
        logger.exception("could not record the usage of a failed reflection", extra={"tier": tier.value})


def apply(cur, tier: Tier, project_id: str, user_id: str, plan: Plan, jobs: Sequence[ReflectionJob]
          ) -> dict[str, TierOutcome]:
    """Write the plan's changes in order; return each job's outcome (done with counts, or empty with why)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # added, updated, superseded
    notes: dict[str, list[str]] = defaultdict(list)
    stored: dict[str, str] = {}  # item ref -> memory id, for changes that target an earlier item
    replaced: dict[str, str] = {}  # memory id -> the memory that superseded it in this batch

    for change in plan.changes:
        item, job = change.item, change.item.job_id
        target = change.target_id or (stored.get(change.target_ref) if change.target_ref else None)
        while target in replaced:  # two items replacing one fact: the second replaces the first's result
            target = replaced[target]
        action = change.action if change.action == "NOOP" or change.action == "ADD" or target else "ADD"

        if action == "NOOP":
            notes[job].append(change.note or "already known")
            continue
        if action == "UPDATE":
            if memories.refine(cur, project_id, user_id, target, change.item.text, embedding=change.item.embedding,
                                embedding_model=change.item.embedding_model, job_id=change.item.job_id):
                counts[job][1] += 1
                stored[item.ref] = target
                continue
            action = "ADD"  # the target is gone (deleted meanwhile): keep the information
        new_id = _insert(cur, tier, project_id, user_id, change)
        if new_id is None:
            notes[job].append("already known")
            continue
        stored[item.ref] = new_id
        counts[job][0] += 1
        if action == "SUPERSEDE" and target != new_id:
            late = (change.target_id is not None and change.target_valid_from is not None
                    and item.valid_from is not None and item.valid_from < change.target_valid_from)
            if late:
                # A job redriven late says something older than what is known: it becomes history at once,
                # and the newer fact stays current.
                memories.supersede(cur, project_id, user_id, new_id, target, job_id=job,
                                   at=change.target_valid_from)
                notes[job].append("older than what is known; kept as history")
            elif memories.supersede(cur, project_id, user_id, target, new_id, job_id=job):
                counts[job][2] += 1
                replaced[target] = new_id

    results: dict[str, TierOutcome] = {}
    for job in jobs:
        added, updated, superseded = counts.get(job.job_id, (0, 0, 0))
        if added or updated or superseded:
            results[job.job_id] = TierOutcome(status=TierStatus.DONE, added=added, updated=updated,
                                              superseded=superseded)
        elif job.job_id in plan.settled:
            status, reason = plan.settled[job.job_id]
            results[job.job_id] = TierOutcome(status=status, reason=reason)
        elif notes.get(job.job_id):
            results[job.job_id] = TierOutcome(status=TierStatus.EMPTY, reason=_summarise(notes[job.job_id]))
        else:
            results[job.job_id] = TierOutcome(status=TierStatus.EMPTY, reason=plan.nothing_reason)
    return results


def _summarise(notes: list[str]) -> str:
    first = notes[0]
    return first if len(notes) == 1 else f"{first} (and {len(notes) - 1} more already known)"


def _insert(cur, tier: Tier, project_id: str, user_id: str, change: Change) -> str | None:
    item = change.item
    return memories.insert(cur, project_id, user_id, memories.NewMemory(
        tier=tier, text=item.text, embedding=item.embedding, embedding_model=item.embedding_model,
        metadata=item.metadata, importance=item.importance, session_id=item.session_id,
        valid_from=item.valid_from, source_turn_ids=item.source_turn_ids, source_job_id=item.job_id,
    ), job_id=item.job_id)

"""Every CloudWatch metric name Reverie emits, in one place: template.yaml's alarms refer to these names."""

from __future__ import annotations

from enum import StrEnum


class Metric(StrEnum):
    # The chat turn's job reached neither the topic nor the outbox (MemoryNotSavedAlarm).
    MEMORY_NOT_SAVED = "MemoryNotSaved"
    # The topic could not be reached or answered an error worth retrying; the job waits in the Valkey outbox.
    JOB_PARKED = "JobParked"
    # The topic refused a job for good (too large, a group id or a character it refuses): the job is failed,
    # with its reason in its status, and the user's later jobs go on (JobsRefusedAlarm).
    JOBS_REFUSED = "JobsRefused"
    # Parked jobs published by a drain (the health probe or the user's next turn).
    OUTBOX_DRAINED = "OutboxDrained"
    OUTBOX_DEPTH = "OutboxDepth"
    OUTBOX_OLDEST_AGE = "OutboxOldestAgeSeconds"
    # Recall answered without a part it could not reach.
    LONG_TERM_RECALL_SKIPPED = "LongTermRecallSkipped"  # Postgres
    RECENT_TURNS_SKIPPED = "RecentTurnsSkipped"  # Valkey
    PENDING_TURNS_SKIPPED = "PendingTurnsSkipped"  # Valkey: what was said and is not learned yet
    QUERY_EMBEDDING_SKIPPED = "QueryEmbeddingSkipped"  # embeddings endpoint: text search only
    # Tier 1 was not updated after a reply (Valkey down); the job still carries the turns.
    WORKING_MEMORY_NOT_UPDATED = "WorkingMemoryNotUpdated"
    # An Idempotency-Key could not be checked (Valkey down); the job id still makes retries harmless.
    IDEMPOTENCY_UNAVAILABLE = "IdempotencyUnavailable"
    # A request was refused with 429: its project spent its budget for the minute (reverie.api.limits).
    RATE_LIMITED = "RateLimited"
    # A request went through without its rate limit checked: Valkey could not count it.
    RATE_LIMIT_UNCHECKED = "RateLimitUnchecked"
    # The chat model failed; the turn was answered 503 and nothing was stored.
    REPLY_FAILED = "ReplyFailed"
    # The reflectors'.
    REFLECTION_FAILURES = "ReflectionFailures"  # records failed back to their queue
    DEAD_JOBS = "DeadJobs"  # failed on their last receive: on their way to the DLQ
    POISON_JOBS = "PoisonJobs"  # refused at once (not a scoped, valid job) and parked in the DLQ
    FORGOTTEN_JOBS_DROPPED = "ForgottenJobsDropped"  # made before their user was forgotten
    # A window closed without a model call: the cheap check found nothing the tier could learn (reflect.triage).
    REFLECTION_CALLS_SPARED = "ReflectionCallsSpared"
    # A narrative job's attempt failed (recorded on the job; dead on its last receive) (NarrativeFailuresAlarm).
    NARRATIVE_FAILURES = "NarrativeFailures"
    # The health probe's.
    ENGINE_DOWN = "EngineDown"
    QUEUE_DEPTH = "QueueDepth"
    DEAD_LETTERS = "DeadLetters"
    REFLECTION_STALLED = "ReflectionStalled"
    # How long past its window the oldest held job has waited (WindowsNotClosingAlarm): the sweep is not running.
    HELD_OVERDUE = "HeldJobOverdueSeconds"

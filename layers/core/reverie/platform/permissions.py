"""What each function's code calls in AWS, as IAM actions: the one table a function's role in template.yaml
must allow, and no more.

Kept in step both ways by the tests: the deploy rehearsal transforms template.yaml as `sam deploy` does and
reads every role against this table (each action allowed, nothing else granted), and the end-to-end suite
records every AWS call a function makes on the local stack and fails on one that is not here. What Lambda
itself needs (logs, X-Ray, network interfaces in a VPC, polling an SQS trigger) comes from the managed
policies SAM attaches and is not listed.
"""

from __future__ import annotations

# Reading a secret: the database's credentials (when the stack is given a secret) and the model's API key.
READ_SECRET = "secretsmanager:GetSecretValue"

CALLS: dict[str, frozenset[str]] = {
    "AuthorizerFunction": frozenset({READ_SECRET}),
    # publishes the turn's reflection job (after the response); queues the regeneration of a stale narrative
    "ChatFunction": frozenset({READ_SECRET, "sns:Publish", "sqs:SendMessage"}),
    # publishes add_memories jobs, queues narrative jobs (a project's /v1/status reads no shared queue)
    "MemoryApiFunction": frozenset({READ_SECRET, "sns:Publish", "sqs:SendMessage"}),
    # park a refused (poison) job, or held jobs out of attempts, in the tier's DLQ
    "EpisodicReflectorFunction": frozenset({READ_SECRET, "sqs:SendMessage"}),
    "SemanticReflectorFunction": frozenset({READ_SECRET, "sqs:SendMessage"}),
    "ProceduralReflectorFunction": frozenset({READ_SECRET, "sqs:SendMessage"}),
    # sends close messages into the tier queues
    "WindowSweepFunction": frozenset({READ_SECRET, "sqs:SendMessage"}),
    # queues narrative jobs
    "NarrativeSweepFunction": frozenset({READ_SECRET, "sqs:SendMessage"}),
    "NarrativeWorkerFunction": frozenset({READ_SECRET}),
    # drains the outbox to the topic, reads queue and DLQ depths (its metrics go out as log lines, EMF)
    "HealthProbeFunction": frozenset({READ_SECRET, "sns:Publish", "sqs:GetQueueAttributes"}),
    "MigrateFunction": frozenset({READ_SECRET}),
    # ops.status reads queue and DLQ depths; backfill.conversations publishes jobs, backfill.narratives queues them;
    # embeddings.reembed reads the model's key
    "AdminFunction": frozenset({READ_SECRET, "sqs:GetQueueAttributes", "sns:Publish", "sqs:SendMessage"}),
}

"""Valkey: tier 1 (working memory), job markers, the outbox, and the small guards and receipts of other stages.

Every key is built in `keys`, with one escaping rule; the other modules each own one structure.
"""

from redis.exceptions import RedisClusterException, RedisError

# What a Valkey call raises when the engine is down or refuses: what a caller that goes on without Valkey catches.
VALKEY_ERRORS = (RedisError, RedisClusterException, OSError)

"""Valkey: tier 1 (working memory), job markers, the outbox, and the small guards and receipts of other stages.

Every key is built in `keys`, with one escaping rule; the other modules each own one structure.
"""

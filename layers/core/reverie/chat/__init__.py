"""The chat path and recall: a turn answered from tier 1 and recalled memory, its job handed over after the
answer; the search and context every reader of memory shares; answers to questions about a user."""

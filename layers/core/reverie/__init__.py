"""Reverie: long-term memory for AI chat assistants."""

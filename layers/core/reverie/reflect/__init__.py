"""Reflection: a tier's queue batch in, memory changes out, each job applied at most once; and the narratives
written from what was learned."""

"""The shared vocabulary of every stage: ids and text fields, tiers, memories, turns, job outcomes, errors.

It imports nothing else of Reverie, so every other package may import it.
"""

"""Vocabulary of every layer: integer codes, hard limits, the validated profile. Imports no other fescontrol layer."""

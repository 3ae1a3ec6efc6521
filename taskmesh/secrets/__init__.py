"""Secrets: encrypted at rest (box), referenced by literal name from templates (references),
masked in everything a run produces (masking)."""

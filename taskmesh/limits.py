"""Sizes the scheduler and the workers must agree on."""

from __future__ import annotations

# The stored output of one attempt. Workers stop shipping an attempt's lines before it (one
# marker line says so); the scheduler enforces it again on what it stores.
MAX_LOG_BYTES_PER_ATTEMPT = 1 << 20
# One output line; a longer one is cut there.
MAX_LOG_LINE_BYTES = 64 * 1024

# Parameters and outputs (README "Parameters, templates and outputs").
# A run's parameters (the job's defaults merged with a trigger's), as compact JSON, and depth.
MAX_PARAMETERS_BYTES = 64 * 1024
MAX_PARAMETERS_DEPTH = 32
# A run's (and an attempt's) output, as compact JSON: larger fails the attempt, never retried.
MAX_OUTPUT_BYTES = 64 * 1024

"""Sizes the scheduler and the workers must agree on."""

from __future__ import annotations

# The stored output of one attempt. Workers stop shipping an attempt's lines before it (one
# marker line says so); the scheduler enforces it again on what it stores.
MAX_LOG_BYTES_PER_ATTEMPT = 1 << 20
# One output line; a longer one is cut there.
MAX_LOG_LINE_BYTES = 64 * 1024

"""Redis: the job status cache (and, later, pub/sub for live watches)."""

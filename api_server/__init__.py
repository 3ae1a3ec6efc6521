"""The API server: JobService and AuthService."""

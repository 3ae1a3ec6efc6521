"""Executors: each turns an Executor spec into an ExecutionOutcome."""

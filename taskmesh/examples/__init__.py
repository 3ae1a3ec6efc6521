"""Examples shipped with Taskmesh: `make up` starts its workers with taskmesh.examples.tasks."""

"""Deferral: the stage, the queue (owner of `tasks`/`batches`), the off-peak window and batching."""

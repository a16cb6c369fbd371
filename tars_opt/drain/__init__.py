"""The drain: sends queued work as Message Batches and collects it; crash recovery; the daemon."""

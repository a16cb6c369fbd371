"""The gateway: `tars-opt serve`, an ASGI app speaking the Messages API (and Message
Batches, through the off-peak queue)."""

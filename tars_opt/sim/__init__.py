"""`simulate`: replay a workload through the chain offline and measure what it saves."""

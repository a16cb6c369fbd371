"""The response cache: its stage, keys, entry store, semantic index, guards and calibration."""

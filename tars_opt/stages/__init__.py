"""The chain's stages: cache -> defer -> prune -> tools -> route."""

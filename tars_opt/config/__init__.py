"""The config: schema (pydantic models), loader (files, env, flags) and paths."""

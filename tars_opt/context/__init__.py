"""What is sent: pruning, tool selection, histories, summaries, relevance, system
prompts, prompt-cache breakpoints, and the dry run `context inspect` shows."""

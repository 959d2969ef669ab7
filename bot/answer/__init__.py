"""The answer wing: prompts, the model client, streaming and replies."""

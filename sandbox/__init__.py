"""The offline trial (`tchap-bot sandbox`) and the one fake Mistral-compatible server."""

"""Benchmarks of tchap-bot against a real Synapse and a local Mistral-compatible server.

`python -m bench` measures, in one run and on one machine, the bot's figures beside the floor
that no bot can beat (a zero-work echo client through the same homeserver), and writes
docs/benchmarks.md and docs/benchmarks.json. `python -m bench --quick` is a smoke run.
The benchmark reports; it never asserts a target.
"""

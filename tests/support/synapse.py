"""The real Synapse homeserver for the integration tests.

The launcher lives in ``sandbox.synapse`` because `tchap-bot sandbox` runs the same
homeserver; this module keeps the tests' import path. Integration tests FAIL, never skip,
when Synapse is missing (``find_synapse_python`` raises).
"""

from __future__ import annotations

from sandbox.synapse import (
    SERVER_NAME,
    START_TIMEOUT,
    STOP_TIMEOUT,
    RegisteredUser,
    SynapseMissing,
    SynapseServer,
    find_synapse_python,
    free_port,
)

__all__ = [
    "SERVER_NAME",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "RegisteredUser",
    "SynapseMissing",
    "SynapseServer",
    "find_synapse_python",
    "free_port",
]

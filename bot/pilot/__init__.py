"""The pilot's evaluation: usage events, feedback on answers, quotas, and the usage report.

Nothing here stores message content or user IDs: people and rooms are keyed hashes
(`pseudonym.py`), homeservers (the ministries) are kept in clear because they are what the
report compares.
"""

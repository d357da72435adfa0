"""What many test modules share and is not a fixture: waiting, HTTP checks, reading as a user, /proc probes.

On pytest's `pythonpath` (pyproject.toml), so a test imports it plainly: `from helpers.waiting import wait_for`.
Fixtures stay in the conftest.py files.
"""

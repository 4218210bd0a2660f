"""Shared pytest setup: hypothesis profiles that never time a test."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# No deadlines: the machine is shared and timed assertions would be flaky.
settings.register_profile("default", deadline=None)
# CI runs more examples, still without deadlines or slow-data health checks.
settings.register_profile(
    "ci", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")

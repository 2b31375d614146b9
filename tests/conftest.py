"""Shared test set-up: a deterministic Hypothesis profile, loaded by default.

`make test` and CI use the "ci" profile: derandomized, so every run draws the
same examples. Set HYPOTHESIS_PROFILE=dev locally to explore with fresh
random examples.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=60,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

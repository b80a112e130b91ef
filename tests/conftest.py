"""Settings for the whole suite."""

import os

from hypothesis import settings

# Hypothesis' per-example deadline (200 ms) is a timing assertion: on a loaded
# machine it fails tests whose logic is fine. Speed is measured in bench/.
settings.register_profile("customer-service", deadline=None, print_blob=True)
# The suite (and CI, from a fresh clone with no example database) draws the same examples
# on every run, so that a run passes or fails for the code, not the draw; exploring new
# examples is a run of its own: HYPOTHESIS_PROFILE=explore .venv/bin/pytest tests/unit
settings.register_profile("ci", parent=settings.get_profile("customer-service"),
                          derandomize=True)
settings.register_profile("explore", parent=settings.get_profile("customer-service"),
                          max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The CLI sizes its rich tables by COLUMNS (100 when unset and not a terminal), and
# pytest-xdist's workers inherit a COLUMNS of their own (80): one width, wide enough for
# the temporary paths the tests print, for every way the suite is run.
os.environ["COLUMNS"] = "120"

"""Settings for the whole suite."""

import os

from hypothesis import settings

# Hypothesis' per-example deadline (200 ms) is a timing assertion: on a loaded
# machine it fails tests whose logic is fine. Speed is measured in bench/.
settings.register_profile("customer-service", deadline=None, print_blob=True)
settings.load_profile("customer-service")

# The CLI sizes its rich tables by COLUMNS (100 when unset and not a terminal), and
# pytest-xdist's workers inherit a COLUMNS of their own (80): one width, wide enough for
# the temporary paths the tests print, for every way the suite is run.
os.environ["COLUMNS"] = "120"

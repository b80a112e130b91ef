"""Settings for the whole suite."""

from hypothesis import settings

# Hypothesis' per-example deadline (200 ms) is a timing assertion: on a loaded
# machine it fails tests whose logic is fine. Speed is measured in bench/.
settings.register_profile("customer-service", deadline=None, print_blob=True)
settings.load_profile("customer-service")

"""The ``customer-service`` command line (click).

``customer_service.cli:main`` is the console script, the zipapp's entry point
and what ``python -m customer_service`` runs. Importing this package imports
click and the config module only; each command imports trio, rich, the storage
backends or the server when it runs, so ``--help`` stays fast.
"""

from __future__ import annotations

from customer_service.cli.app import cli, main

__all__ = ["cli", "main"]

"""Test doubles that speak real wire protocols on loopback.

Import from the modules (``from tests.fakes.openai_server import open_fake_openai``): this
package deliberately re-exports nothing, so ``python -m tests.fakes.openai_server`` does not
import the module twice.
"""

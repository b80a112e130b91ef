"""Campaigns: the runner, the AI edge and the bus publisher the CLI uses."""

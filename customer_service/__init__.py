"""customer-service: a self-hosted live customer-service server."""

__version__ = "0.1.0"

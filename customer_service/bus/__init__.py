"""The bus between instances (Redis); see ``bus.redis``."""

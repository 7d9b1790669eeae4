"""Persistence (SQLAlchemy 2 + Alembic): requests, generations, ratings, settings."""

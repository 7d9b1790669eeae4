"""Persistence (SQLAlchemy 2 + Alembic): requests, generations, ratings, settings,
model versions and training runs, on SQLite by default or PostgreSQL.

    python -m storage migrate          # alembic upgrade head on DATABASE_URL / config.toml
    python -m storage url              # which database is in use

| module | job |
|---|---|
| ``models``   | the schema (typed ORM, naming convention); Alembic migrations follow it |
| ``engine``   | the URL (DATABASE_URL > ``[database] url`` > var/stylebot.db), engines, sessions |
| ``database`` | ``Database``: runs units of work off the event loop; spools logs in an outage |
| ``log``      | users, chats, requests and generations |
| ``ratings``  | one +1/-1 per person per generation (atomic upsert) |
| ``settings`` | temperature per chat / style / global, with an audit trail |
| ``stats``    | usage, latency and ratings per style and per model version |
| ``versions`` | model versions (candidate / active / retired) and training runs |
| ``records``  | ``RequestRecord`` and the rules for storing text (NUL, length limits) |
| ``spool``    | request logs kept on disk while the database is down |
| ``updates``  | received Telegram updates until answered (at-least-once delivery) |

Repository functions take an open ``Session`` as their first argument and only flush;
whoever opened the session owns the transaction (``Database.run`` in the bot, a
``with sessions.begin()`` block in scripts, a rolled-back transaction in tests).
"""

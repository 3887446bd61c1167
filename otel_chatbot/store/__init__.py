"""Postgres storage: migrations, the embedded server, the bulk writer, read queries, retention."""

"""Local execution: the in-process runner, its backends (in memory, SQLite) and sayiir's local API."""

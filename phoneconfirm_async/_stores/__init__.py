"""The session stores: the rules, the protocol, memory, SQLite, PostgreSQL, URLs."""

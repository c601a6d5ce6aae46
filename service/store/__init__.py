"""SQLite storage: the schema (numbered migrations) and the daemon's async writer."""

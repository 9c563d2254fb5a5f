"""PostgreSQL: the schema, its migrations and the connection settings (issue 13, in progress).

Today the server serves from SQLite only; PostgreSQL holds a copy of an event's database
(`studyvisit db copy`) with the same tables, in PostgreSQL's own types.
"""

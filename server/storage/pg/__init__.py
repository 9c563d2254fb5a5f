"""PostgreSQL: the schema, its migrations, and the unit of work the server serves from."""

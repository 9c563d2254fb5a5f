"""Storage: the only code that touches SQL. Functions take a connection first and return Structs."""

"""PostgreSQL access: the only package that imports SQLAlchemy."""

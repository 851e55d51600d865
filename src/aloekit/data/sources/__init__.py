"""One small adapter per public dataset format: rows in, :mod:`aloekit.data.schema` items out."""

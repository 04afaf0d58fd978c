"""opsdash's memory (design.md section 8): the recorder that writes what the bus carries into
PostgreSQL, the versioned schema, and the queries behind the history endpoints."""

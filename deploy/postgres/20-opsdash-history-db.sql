-- opsdash's own history (design.md section 8) in a database of its own, next to iotcloud and keycloak.
-- Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d); the tables
-- are created by opsdash itself (versioned migrations, history/schema.py).
CREATE DATABASE opsdash;

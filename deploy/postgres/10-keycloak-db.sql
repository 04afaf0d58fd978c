-- Keycloak keeps its own tables in their own database, next to the platform's iotcloud database.
-- Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
CREATE DATABASE keycloak;

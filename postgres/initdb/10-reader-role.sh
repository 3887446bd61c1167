#!/bin/sh
# First start of the compose Postgres only (docker-entrypoint-initdb.d): give the read-only role that
# Grafana uses a login and the password from OTEL_CHATBOT_READER_PASSWORD. Its SELECT grants come from
# migration 0002_reader_role.sql, which `otel-chatbot migrate` applies next and which keeps a role that
# already exists. The password travels as a psql variable, quoted by psql (:'…'), never through the shell.
set -eu
: "${OTEL_CHATBOT_READER_PASSWORD:?set OTEL_CHATBOT_READER_PASSWORD (see .env.example)}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v reader_password="$OTEL_CHATBOT_READER_PASSWORD" <<'SQL'
CREATE ROLE otel_chatbot_reader LOGIN PASSWORD :'reader_password';
SQL

#!/bin/sh
# The official postgres image's contract, as Testcontainers relies on it: POSTGRES_USER (default
# postgres), POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB
# (default: the user's name); initdb on first start with scram-sha-256 for TCP; scripts in
# /docker-entrypoint-initdb.d run on a socket-only server first, so nothing connects over TCP
# before the database is ready; then postgres runs as PID 1 and logs "database system is ready to
# accept connections".
set -eu

if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" != "postgres" ]; then exec "$@"; fi

if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA"
	chmod 700 "$PGDATA"
	chown postgres:postgres /var/run/postgresql
	chmod 2777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
		echo "Error: the database is uninitialized and POSTGRES_PASSWORD is not set." >&2
		echo "Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)." >&2
		exit 1
	fi
	pwfile="$(mktemp)"
	printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
	initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host="$auth" \
		--encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-}
	rm -f "$pwfile"
	printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
	printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	# A socket-only server for the setup, as the official image does.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
	if [ "$db" != postgres ]; then
		# Through stdin: psql interpolates :"db" (quoted as an identifier) there, not in -c.
		echo 'create database :"db"' |
			psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres --set db="$db"
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh) echo "running $f"; . "$f" ;;
		*.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --username "$user" --dbname "$db" -f "$f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop
	echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"

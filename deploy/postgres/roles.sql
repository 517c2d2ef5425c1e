-- One LOGIN role and one schema per service, and nothing else reachable: run with psql as a superuser,
-- connected to the platform's database (docker-compose runs it from the postgres init hook,
-- scripts/prod-up.sh and aftercare/dbroles.py run it with psql).
--
--   CUSTOMER_SVC_DB_PASSWORD=... FOLLOWUP_SVC_DB_PASSWORD=... psql -v ON_ERROR_STOP=1 -d aftercare -f roles.sql
--
-- Passwords come from the environment (<SERVICE>_DB_PASSWORD) or psql variables (-v customer_svc_password=...);
-- the environment wins. A role whose password is not given keeps the one it has (or none, for a new role).
-- Nothing secret lives in this file.
--
-- Idempotent, and safe to run again and again, on several databases of one cluster, even concurrently:
-- roles are cluster-wide, so an existing role is reused (its password updated when one is given), never dropped.
-- Each service's migrations then run AS its role: it owns its schema and may create anything inside it, and
-- it has no privilege anywhere else (no USAGE on other services' schemas, no CREATE in public, no CREATE on
-- the database, CONNECT to this database only by grant).
--
-- Adding a service: one row in the VALUES list and one \getenv line.

\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;

\if :{?customer_svc_password} \else \set customer_svc_password '' \endif
\if :{?followup_svc_password} \else \set followup_svc_password '' \endif
\if :{?notify_svc_password} \else \set notify_svc_password '' \endif
\if :{?survey_svc_password} \else \set survey_svc_password '' \endif
\getenv customer_svc_password CUSTOMER_SVC_DB_PASSWORD
\getenv followup_svc_password FOLLOWUP_SVC_DB_PASSWORD
\getenv notify_svc_password NOTIFY_SVC_DB_PASSWORD
\getenv survey_svc_password SURVEY_SVC_DB_PASSWORD

CREATE TEMPORARY TABLE aftercare_service (role name PRIMARY KEY, schema name NOT NULL UNIQUE, password text NOT NULL);
INSERT INTO aftercare_service (role, schema, password) VALUES
    ('customer_svc', 'customer', :'customer_svc_password'),
    ('followup_svc', 'followup', :'followup_svc_password'),
    ('notify_svc',   'notify',   :'notify_svc_password'),
    ('survey_svc',   'survey',   :'survey_svc_password');
\unset customer_svc_password
\unset followup_svc_password
\unset notify_svc_password
\unset survey_svc_password

-- Database-wide: nobody but the granted roles connects, nobody creates objects in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;

-- Roles. Another session (a parallel test run, a second database) may create or alter the same role at the
-- same moment: "already exists" and "tuple concurrently updated" are retried, not fatal.
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT * FROM aftercare_service ORDER BY role LOOP
        FOR attempt IN 1..10 LOOP
            BEGIN
                IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = s.role) THEN
                    EXECUTE format('CREATE ROLE %I LOGIN', s.role);
                END IF;
                EXECUTE format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
                               'NOBYPASSRLS INHERIT', s.role);
                IF s.password <> '' THEN
                    EXECUTE format('ALTER ROLE %I WITH PASSWORD %L', s.role, s.password);
                END IF;
                EXIT;
            EXCEPTION WHEN duplicate_object OR unique_violation OR internal_error THEN
                IF attempt = 10 THEN RAISE; END IF;
                PERFORM pg_sleep(0.05 * attempt);
            END;
        END LOOP;
    END LOOP;
END
$$;

-- Per service: CONNECT to this database, its own schema owned by its role, unqualified names resolve there.
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role) FROM aftercare_service ORDER BY role
\gexec
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', schema, role) FROM aftercare_service ORDER BY role
\gexec
SELECT format('ALTER SCHEMA %I OWNER TO %I', schema, role) FROM aftercare_service ORDER BY role
\gexec
SELECT format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', schema) FROM aftercare_service ORDER BY role
\gexec
SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', role, current_database(), schema)
FROM aftercare_service ORDER BY role
\gexec
-- The services' timeouts (shared/db/engine.py sends them on connect) also as the roles' own defaults: a pooler
-- that refuses startup parameters (PgBouncer: list them in ignore_startup_parameters) then keeps them.
SELECT format('ALTER ROLE %I IN DATABASE %I SET %s = %L', role, current_database(), setting, value)
FROM aftercare_service,
     (VALUES ('statement_timeout', '30s'), ('lock_timeout', '10s'),
             ('idle_in_transaction_session_timeout', '120s')) AS t(setting, value)
ORDER BY role, setting
\gexec

-- Objects someone else created in a service's schema (e.g. migrated as a superuser before this file existed)
-- are handed to the service's role, so its next migration can alter them. Sequences owned by a column and
-- indexes follow their table.
SELECT format('ALTER %s %I.%I OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                             WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
              n.nspname, c.relname, s.role)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN aftercare_service s ON s.schema = n.nspname
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = s.role)
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_catalog.pg_depend d
                                       WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                                         AND d.deptype IN ('a', 'i')))
ORDER BY n.nspname, c.relname
\gexec
SELECT format('ALTER %s %I.%I OWNER TO %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
              n.nspname, t.typname, s.role)
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
JOIN aftercare_service s ON s.schema = n.nspname
WHERE t.typtype IN ('e', 'd', 'r')
  AND t.typowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = s.role)
ORDER BY n.nspname, t.typname
\gexec
SELECT format('ALTER ROUTINE %I.%I(%s) OWNER TO %I', n.nspname, p.proname,
              pg_catalog.pg_get_function_identity_arguments(p.oid), s.role)
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN aftercare_service s ON s.schema = n.nspname
WHERE p.proowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = s.role)
ORDER BY n.nspname, p.proname
\gexec

DROP TABLE aftercare_service;
\set QUIET off
\echo 'aftercare roles and schemas are in place in database' :"DBNAME"

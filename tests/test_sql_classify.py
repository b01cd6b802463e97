"""Statement classification (hoopgw.policy._classify) against docs/POLICY.md "Statement classes".

CORPUS is the table to grow: one ``(sql, "expected classes")`` row per case, classes separated by spaces
("" for an empty query). Rows run with PREPARED as the session's prepared statements.
"""

from __future__ import annotations

import inspect

import pglast.ast
import pytest

from hoopgw.config._policy import SqlConfig
from hoopgw.policy import PG_CLASSES
from hoopgw.policy._classify import (
    _HANDLERS,
    DEFAULT_ADMIN_FUNCTIONS,
    DEFAULT_WRITE_FUNCTIONS,
    PROTECTED_PREFIXES,
    PROTECTED_SETTINGS,
    Classification,
    Classifier,
)
from hoopgw.policy._settings import is_protected_setting, is_safe_client_encoding

RW = "write write-without-where"

#: The session's prepared statements for every corpus row.
PREPARED = {
    "p_read": frozenset({"read"}),
    "p_write": frozenset({"write"}),
    "p_wipe": frozenset({"write", "write-without-where"}),
    "P_Admin": frozenset({"read", "admin"}),
}

CORPUS: list[tuple[str, str]] = [
    # -- empty queries
    ("", ""),
    ("   \n\t ", ""),
    (";", ""),
    (";;  ;", ""),
    ("-- only a comment", ""),
    ("/* block */ ; /* another */", ""),
    # -- read
    ("SELECT 1", "read"),
    ("select * from accounts where id = 42", "read"),
    ("SELECT a.id, b.name FROM a JOIN b ON a.id = b.a_id WHERE b.x > 1 ORDER BY 1 LIMIT 5", "read"),
    ("VALUES (1, 'a'), (2, 'b')", "read"),
    ("TABLE accounts", "read"),
    ("SELECT * FROM (SELECT * FROM t) s", "read"),
    ("WITH x AS (SELECT 1) SELECT * FROM x", "read"),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", "read"),
    ("SELECT 1 UNION SELECT 2 EXCEPT SELECT 3", "read"),
    ("SELECT count(*), now(), current_user, upper('x') FROM t GROUP BY 1 HAVING count(*) > 1", "read"),
    ("SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.id = t.id) l", "read"),
    ("SELECT current_setting('work_mem')", "read"),
    ("SELECT pg_sleep(0)", "read"),
    ("SELECT pg_advisory_lock(1)", "read"),
    ("SELECT t.pg_read_file_count FROM t", "read"),
    ("FETCH 10 FROM c", "read"),
    ("FETCH ALL IN c", "read"),
    ("MOVE FORWARD 5 IN c", "read"),
    ("DECLARE c CURSOR FOR SELECT * FROM t", "read"),
    ("DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT 1", "read"),
    ("EXPLAIN SELECT * FROM t", "read"),
    ("EXPLAIN (COSTS off, FORMAT json) SELECT * FROM t", "read"),
    ("EXPLAIN ANALYZE SELECT * FROM t", "read"),
    ("COPY t TO STDOUT", "read"),
    ("COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER)", "read"),
    ("COPY (SELECT * FROM t WHERE x > 1) TO STDOUT", "read"),
    # -- evasion: comments, case, quoting, several statements
    ("/* x */ DELETE FROM t", RW),
    ("-- c\nDROP TABLE t", "ddl"),
    ("DROP /* inline */ TABLE t", "ddl"),
    ("DEL/**/ETE FROM t", "unknown"),
    ("dElEtE fRoM t", RW),
    ("SeLeCt 1", "read"),
    ('SELECT "DELETE" FROM "DROP TABLE t"', "read"),
    ("SELECT $$; DROP TABLE t; $$", "read"),
    ("SELECT $tag$ $$; DELETE FROM t; $$ $tag$", "read"),
    ("SELECT 'it''s; DROP TABLE t; --'", "read"),
    ("SELECT E'\\'; DROP TABLE t; --'", "read"),
    ("SELECT E'\\\\'; DROP TABLE t; --'", "read ddl"),
    ("SELECT E'\\\\'; DROP TABLE t; --", "read ddl"),
    ("SELECT '\\'; DROP TABLE t; --'", "read ddl"),
    ("SELECT U&'\\0041'; DELETE FROM t", "read " + RW),
    ("SELECT 1; DROP TABLE t", "read ddl"),
    ("SELECT 1;DROP TABLE t;", "read ddl"),
    ("SELECT 1 -- ; DROP TABLE t", "read"),
    ("SELECT 1 /* ; DROP TABLE t */", "read"),
    ("SELECT 1 /* nested /* ; */ DROP TABLE t */", "read"),
    ("SELECT 1; UPDATE t SET x = 1 WHERE id = 2; COMMIT", "read write session"),
    ("SELEC 1", "unknown"),
    ("SELECT 'unterminated", "unknown"),
    ("SELECT 1; DROP TABLE", "unknown"),
    # -- write
    ("INSERT INTO t VALUES (1)", "write"),
    ("INSERT INTO t (a, b) SELECT a, b FROM u", "write"),
    ("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET x = excluded.x", "write"),
    ("INSERT INTO t VALUES (1) RETURNING *", "write"),
    ("UPDATE t SET x = 1 WHERE id = 2", "write"),
    ("UPDATE t SET x = u.x FROM u WHERE t.id = u.id", "write"),
    ("DELETE FROM t WHERE id = 1", "write"),
    ("DELETE FROM t USING u WHERE t.id = u.id RETURNING t.*", "write"),
    ("UPDATE t SET x = 1 WHERE CURRENT OF c", "write"),
    ("DELETE FROM t WHERE CURRENT OF c", "write"),
    ("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET x = u.x", "write"),
    (
        "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (1)",
        "write",
    ),
    ("COPY t FROM STDIN", "write"),
    ("COPY t (a) FROM STDIN WITH (FORMAT csv) WHERE a > 0", "write"),
    ("SELECT * FROM t FOR UPDATE", "read write"),
    ("SELECT * FROM t FOR SHARE SKIP LOCKED", "read write"),
    ("SELECT * FROM t FOR NO KEY UPDATE NOWAIT", "read write"),
    ("SELECT * FROM t FOR KEY SHARE", "read write"),
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", "read write"),
    ("SELECT 1 UNION SELECT 2 FOR UPDATE", "read write"),
    ("DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", "read write"),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "write"),
    ("CALL do_things(1, 'x')", "write"),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY mv", "write"),
    ("NOTIFY chan, 'payload'", "write"),
    # -- write without WHERE
    ("DELETE FROM t", RW),
    ("UPDATE t SET x = 1", RW),
    ("UPDATE t SET x = 1 RETURNING *", RW),
    ("DELETE FROM ONLY t", RW),
    ("TRUNCATE t", RW),
    ("TRUNCATE TABLE a, b RESTART IDENTITY CASCADE", RW),
    ("MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE", "write"),
    # -- write-CTEs, at any depth
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "read " + RW),
    ("WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d", "read write"),
    ("WITH u AS (UPDATE t SET x = 1 RETURNING *) SELECT count(*) FROM u", "read " + RW),
    ("WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM i", "read write"),
    ("WITH a AS (WITH b AS (DELETE FROM t RETURNING 1) SELECT * FROM b) SELECT * FROM a", "read " + RW),
    ("SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s", "read " + RW),
    ("INSERT INTO log SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s", RW),
    ("WITH d AS (DELETE FROM t RETURNING *) INSERT INTO archive SELECT * FROM d", RW),
    (
        "WITH m AS (MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE RETURNING t.*) SELECT 1",
        "read write",
    ),
    ("COPY (DELETE FROM t RETURNING *) TO STDOUT", RW),
    ("COPY (UPDATE t SET x = 1 WHERE id = 1 RETURNING *) TO STDOUT", "write"),
    ("COPY (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) TO STDOUT", "read " + RW),
    # -- EXPLAIN
    ("EXPLAIN DELETE FROM t", "read"),
    ("EXPLAIN UPDATE t SET x = 1", "read"),
    ("EXPLAIN ANALYZE DELETE FROM t", RW),
    ("EXPLAIN ANALYSE DELETE FROM t WHERE id = 1", "write"),
    ("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET x = 1", RW),
    ("EXPLAIN (BUFFERS, ANALYZE true) INSERT INTO t VALUES (1)", "write"),
    ("EXPLAIN (ANALYZE false) DELETE FROM t", RW),
    ("EXPLAIN (analyze off) DELETE FROM t WHERE id = 1", "write"),
    ("EXPLAIN ANALYZE CREATE TABLE t2 AS SELECT 1", "ddl"),
    ("EXPLAIN CREATE TABLE t2 AS SELECT 1", "read"),
    ("EXPLAIN SELECT pg_read_file('/etc/passwd')", "read admin"),
    ("EXPLAIN ANALYZE EXECUTE p_wipe", RW),
    ("EXPLAIN EXECUTE p_wipe", "read"),
    # -- DDL
    ("CREATE TABLE t (id int PRIMARY KEY, x text)", "ddl"),
    ("CREATE TEMP TABLE t (id int)", "ddl"),
    ("CREATE UNLOGGED TABLE IF NOT EXISTS t (id int)", "ddl"),
    ("CREATE TABLE t2 AS SELECT * FROM t", "ddl"),
    ("CREATE TABLE t2 AS WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "ddl " + RW),
    ("SELECT * INTO t2 FROM t", "ddl"),
    ("SELECT * INTO TEMP t2 FROM t", "ddl"),
    ("CREATE MATERIALIZED VIEW mv AS SELECT * FROM t WITH NO DATA", "ddl"),
    ("CREATE VIEW v AS SELECT * FROM t", "ddl"),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", "ddl"),
    ("ALTER TABLE t ADD COLUMN y int", "ddl"),
    ("ALTER TABLE t RENAME TO t2", "ddl"),
    ("ALTER TABLE t OWNER TO bob", "ddl"),
    ("ALTER TABLE t SET SCHEMA s", "ddl"),
    ("ALTER TABLE t ALTER COLUMN x SET DEFAULT nextval('s')", "ddl write"),
    ("DROP TABLE t", "ddl"),
    ("DROP TABLE IF EXISTS a, b CASCADE", "ddl"),
    ("DROP VIEW v", "ddl"),
    ("DROP SCHEMA s CASCADE", "ddl"),
    ("DROP FUNCTION f(int)", "ddl"),
    ("DROP FUNCTION pg_read_file(text)", "ddl"),
    ("CREATE INDEX CONCURRENTLY i ON t (x)", "ddl"),
    ("CREATE SCHEMA s", "ddl"),
    ("CREATE SCHEMA s CREATE TABLE a (id int) CREATE VIEW v AS SELECT 1", "ddl"),
    ("CREATE SCHEMA s GRANT SELECT ON a TO bob", "ddl dcl"),
    ("CREATE SEQUENCE s", "ddl"),
    ("ALTER SEQUENCE s RESTART WITH 10", "ddl"),
    ("CREATE TYPE mood AS ENUM ('sad', 'ok')", "ddl"),
    ("CREATE TYPE pair AS (a int, b int)", "ddl"),
    ("CREATE DOMAIN pos AS int CHECK (VALUE > 0)", "ddl"),
    ("CREATE EXTENSION IF NOT EXISTS pgcrypto", "ddl"),
    ("CREATE EXTENSION dblink", "ddl"),
    ("ALTER EXTENSION pgcrypto UPDATE", "ddl"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ DELETE FROM t; SELECT 1 $$", "ddl"),
    ("CREATE OR REPLACE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'", "ddl"),
    ("CREATE PROCEDURE p() LANGUAGE sql AS $$ TRUNCATE t $$", "ddl"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM t; SELECT 1; END", "ddl " + RW),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN nextval('s')", "ddl write"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role = 'postgres' AS 'SELECT 1'", "ddl admin"),
    ("ALTER FUNCTION f() SET search_path = public", "ddl"),
    ("ALTER FUNCTION f() SET session_replication_role = replica", "ddl admin"),
    ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", "ddl"),
    ("CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", "ddl"),
    ("CREATE RULE r AS ON SELECT TO t DO ALSO DELETE FROM u", "ddl " + RW),
    ("CREATE POLICY p ON t USING (owner = current_user)", "ddl"),
    ("ALTER POLICY p ON t USING (true)", "ddl"),
    ("COMMENT ON TABLE t IS 'x'", "ddl"),
    ("SECURITY LABEL FOR selinux ON TABLE t IS 'x'", "ddl"),
    ("CREATE DATABASE d", "ddl"),
    ("DROP DATABASE d", "ddl"),
    ("ALTER DATABASE d SET work_mem = '64MB'", "ddl"),
    ("ALTER DATABASE d SET default_transaction_read_only = off", "ddl admin"),
    ("ALTER DATABASE d RESET log_statement", "ddl admin"),
    ("ALTER DATABASE d CONNECTION LIMIT 5", "ddl"),
    ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", "ddl"),
    ("CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'x')", "ddl"),
    ("IMPORT FOREIGN SCHEMA public FROM SERVER s INTO local", "ddl"),
    ("CREATE FOREIGN TABLE ft (id int) SERVER s", "ddl"),
    ("CREATE PUBLICATION pub FOR ALL TABLES", "ddl"),
    ("CREATE SUBSCRIPTION sub CONNECTION 'host=x' PUBLICATION pub", "ddl admin"),
    ("DROP SUBSCRIPTION sub", "ddl admin"),
    ("CREATE TABLESPACE ts LOCATION '/tmp/ts'", "ddl"),
    ("CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", "ddl"),
    ("CREATE TABLE t (id int DEFAULT nextval('s'))", "ddl write"),
    ("CREATE TABLE t (x text DEFAULT pg_read_file('/etc/passwd'))", "ddl admin"),
    ("CREATE AGGREGATE a (int) (SFUNC = int4pl, STYPE = int)", "ddl"),
    # -- DO blocks
    ("DO $$ BEGIN RAISE NOTICE 'hi'; END $$", "ddl"),
    ("DO $x$ BEGIN DELETE FROM t; END $x$", "ddl"),
    ("DO LANGUAGE plpgsql 'BEGIN EXECUTE ''DROP TABLE t''; END'", "ddl"),
    ("do $$begin perform 1; end$$; SELECT 1", "ddl read"),
    # -- DCL
    ("GRANT SELECT ON t TO bob", "dcl"),
    ("GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO PUBLIC", "dcl"),
    ("REVOKE INSERT ON t FROM bob", "dcl"),
    ("GRANT admins TO bob", "dcl"),
    ("REVOKE admins FROM bob", "dcl"),
    ("CREATE ROLE bob LOGIN PASSWORD 'x'", "dcl"),
    ("CREATE USER bob", "dcl"),
    ("CREATE GROUP g", "dcl"),
    ("ALTER ROLE bob SUPERUSER", "dcl"),
    ("ALTER USER bob WITH PASSWORD 'y'", "dcl"),
    ("ALTER GROUP g ADD USER bob", "dcl"),
    ("ALTER ROLE bob RENAME TO robert", "dcl"),
    ("DROP ROLE bob", "dcl"),
    ("DROP USER IF EXISTS bob", "dcl"),
    ("ALTER ROLE bob SET work_mem = '1GB'", "dcl"),
    ("ALTER ROLE bob SET role = 'postgres'", "dcl admin"),
    ("ALTER ROLE bob IN DATABASE d SET log_statement = 'none'", "dcl admin"),
    ("ALTER ROLE ALL RESET ALL", "dcl"),
    ("ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO bob", "dcl"),
    ("REASSIGN OWNED BY bob TO alice", "dcl"),
    ("DROP OWNED BY bob", "dcl"),
    ("COMMENT ON ROLE bob IS 'x'", "dcl"),
    # -- admin: COPY with programs and server files
    ("COPY t TO PROGRAM 'gzip > /tmp/t.gz'", "read admin"),
    ("COPY t FROM PROGRAM 'curl http://x'", "write admin"),
    ("COPY t FROM '/tmp/x'", "write admin"),
    ("COPY t TO '/tmp/x'", "read admin"),
    ("COPY (SELECT 1) TO '/tmp/x'", "read admin"),
    ("COPY t FROM ''", "write admin"),
    ("COPY (SELECT 1) TO ''", "read admin"),
    ("COPY t TO STDOUT; COPY t TO ''", "read admin"),
    # -- admin: functions, anywhere
    # functions that run SQL given as text hide what they run (found by review: ts_stat() ran
    # set_config('default_transaction_read_only', 'off') for a reader)
    ("SELECT * FROM ts_stat($q$SELECT to_tsvector(set_config('x', 'y', false))$q$)", "read admin"),
    ("SELECT * FROM ts_rewrite('a'::tsquery, 'SELECT a, b FROM aliases')", "read admin"),
    ("SELECT query_to_xml('DELETE FROM t RETURNING 1', true, true, '')", "read admin"),
    ("SELECT brin_desummarize_range('i', 0)", "read admin"),
    ("SELECT gin_clean_pending_list('i')", "read admin"),
    # second review: old names of file readers, the views over configuration files, catalog writes
    ("SELECT pg_read_file_old('/etc/passwd', 0, 100)", "read admin"),
    ("SELECT pg_rotate_logfile_old()", "read admin"),
    ("SELECT pg_file_read('x', 0, 10)", "read admin"),
    ("SELECT pg_current_logfile()", "read admin"),
    ("SELECT * FROM pg_hba_file_rules", "read admin"),
    ("SELECT * FROM pg_catalog.pg_ident_file_mappings", "read admin"),
    ("SELECT name FROM t JOIN pg_file_settings f USING (name)", "read admin"),
    ("SELECT * FROM pg_class", "read"),
    ("UPDATE pg_catalog.pg_authid SET rolsuper = true WHERE rolname = 'x'", "write admin"),
    ("UPDATE pg_authid SET rolsuper = true WHERE rolname = 'x'", "write admin"),
    ("INSERT INTO pg_catalog.pg_class VALUES (1)", "write admin"),
    ("DELETE FROM information_schema.sql_features WHERE true", "write admin"),
    ("TRUNCATE pg_largeobject", "write write-without-where admin"),
    ("COPY pg_authid FROM STDIN", "write admin"),
    ("SELECT pg_set_relation_stats('t'::regclass, relpages => 1)", "read admin"),
    ("SET auto_explain.log_min_duration = 0", "session admin"),
    ("SET compute_query_id = off", "session admin"),
    # third review: relations named in strings, contrib functions that run SQL text or change tables
    ("SELECT table_to_xml('pg_hba_file_rules'::regclass, true, false, '')", "read admin"),
    ("SELECT schema_to_xml('pg_catalog', true, false, '')", "read admin"),
    ("SELECT database_to_xml(true, false, '')", "read admin"),
    (
        "SELECT * FROM xpath_table('k', 'd', 't', '/a', 'true; CREATE TABLE x (y int)') AS t(k int, v text)",
        "read admin",
    ),
    (
        "SELECT * FROM crosstab($$SELECT set_config('role', 'x', false), 'a', 'b'$$) AS ct(r text, c text)",
        "read admin",
    ),
    ("SELECT * FROM connectby('t', 'id', 'parent', '1', 0) AS t(id text, p text, l int)", "read admin"),
    ("SELECT cron.schedule('nightly', '0 3 * * *', 'DELETE FROM t')", "read admin"),
    ("SELECT heap_force_kill('t'::regclass, ARRAY['(0,1)']::tid[])", "read admin"),
    ("SELECT pg_truncate_visibility_map('t')", "read admin"),
    ("UPDATE sql_features SET comments = 'x' WHERE feature_id = 'B011'", "write admin"),
    # the pg_settings view's update rule calls set_config()
    ("UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'", "write admin"),
    ("UPDATE pg_catalog.PG_SETTINGS SET setting = 'off' WHERE name = 'x'", "write admin"),
    (
        "WITH u AS (UPDATE pg_settings SET setting = 1 WHERE name = 'x' RETURNING 1) SELECT 1",
        "read write admin",
    ),
    ("SELECT * FROM pg_read_file('/etc/passwd')", "read admin"),
    ("SELECT pg_read_file('/etc/passwd')", "read admin"),
    ("SELECT pg_catalog.pg_read_binary_file('/etc/passwd')", "read admin"),
    ('SELECT "pg_catalog"."PG_READ_FILE"(\'x\')', "read admin"),
    ("SELECT PG_READ_FILE('x')", "read admin"),
    ("SELECT lo_import('/etc/passwd')", "read admin"),
    ("SELECT lo_export(1, '/tmp/x')", "read admin"),
    ("SELECT pg_catalog.pg_terminate_backend(1)", "read admin"),
    ("SELECT pg_cancel_backend(pid) FROM pg_stat_activity", "read admin"),
    ("SELECT pg_reload_conf()", "read admin"),
    ("SELECT * FROM pg_ls_dir('.')", "read admin"),
    ("SELECT * FROM t WHERE x = (SELECT pg_read_file('/etc/passwd'))", "read admin"),
    ("SELECT * FROM t ORDER BY pg_stat_file('x')", "read admin"),
    ("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM pg_ls_dir('/') d)", "read admin"),
    ("SELECT coalesce(NULL, upper(pg_read_file('x')))", "read admin"),
    ("SELECT * FROM ROWS FROM (pg_ls_dir('/'), generate_series(1, 2))", "read admin"),
    ("SELECT x FROM t, LATERAL pg_read_file(t.path) x", "read admin"),
    ("WITH f AS (SELECT pg_read_file('x')) SELECT * FROM f", "read admin"),
    ("VALUES (pg_read_file('x'))", "read admin"),
    ("SELECT 1 UNION SELECT length(pg_read_file('x'))", "read admin"),
    ("INSERT INTO t SELECT pg_read_file('/etc/passwd')", "write admin"),
    ("INSERT INTO t VALUES (1) RETURNING pg_read_file('x')", "write admin"),
    ("UPDATE t SET x = pg_read_file('/etc/passwd') WHERE id = 1", "write admin"),
    ("COPY (SELECT pg_read_file('x')) TO STDOUT", "read admin"),
    ("CALL p(pg_read_file('x'))", "write admin"),
    ("SELECT (pg_read_file('x')).*", "read admin"),
    ("SELECT * FROM dblink('host=x', 'DELETE FROM t') AS r(x int)", "read admin"),
    ("SELECT dblink_exec('host=x', 'DROP TABLE t')", "read admin"),
    ("SELECT query_to_xml('DELETE FROM t RETURNING *', true, true, '')", "read admin"),
    ("SELECT pg_create_logical_replication_slot('s', 'pgoutput')", "read admin"),
    ("SELECT pg_switch_wal()", "read admin"),
    ("SELECT count(*) FILTER (WHERE pg_stat_file(x) IS NOT NULL) FROM t", "read admin"),
    ("SELECT sum(x) OVER (ORDER BY pg_read_file(y)) FROM t", "read admin"),
    ("SELECT CASE WHEN x THEN pg_read_file('a') END FROM t", "read admin"),
    ("SELECT ARRAY[pg_read_file('a')]", "read admin"),
    ("SELECT pg_read_file('a')::int", "read admin"),
    ("SELECT (t.path).pg_read_file FROM t", "read admin"),
    ("SELECT t.lo_import FROM t", "read admin"),
    ("PREPARE q AS SELECT pg_read_file($1)", "session read admin"),
    # -- write functions
    ("SELECT setval('s', 1)", "read write"),
    ("SELECT nextval('s')", "read write"),
    ("SELECT pg_catalog.nextval('s') FROM generate_series(1, 3)", "read write"),
    ("SELECT lo_create(0)", "read write"),
    ("SELECT lo_unlink(42)", "read write"),
    ("SELECT lo_from_bytea(0, 'x')", "read write"),
    ("SELECT pg_notify('chan', 'x')", "read write"),
    ("EXPLAIN SELECT nextval('s')", "read write"),
    # -- set_config
    ("SELECT set_config('default_transaction_read_only', 'off', false)", "read admin"),
    ("SELECT set_config('role', 'postgres', true)", "read admin"),
    ("SELECT set_config('ROLE', 'postgres', true)", "read admin"),
    ("SELECT set_config('log_statement', 'none', false)", "read admin"),
    ("SELECT set_config('application_name', 'x', false)", "read session"),
    ("SELECT pg_catalog.set_config('search_path', 'public', true)", "read session"),
    ("SELECT set_config(name, 'x', false) FROM t", "read admin"),
    ("SELECT set_config('ro' || 'le', 'postgres', false)", "read admin"),
    ("SELECT set_config('client_encoding', 'UTF8', false)", "read session"),
    ("SELECT set_config('client_encoding', 'SJIS', false)", "read admin"),
    # -- admin: roles and protected settings
    ("SET ROLE postgres", "session admin"),
    ("SET ROLE NONE", "session admin"),
    ("RESET ROLE", "session admin"),
    ("SET SESSION AUTHORIZATION x", "session admin"),
    ("SET SESSION AUTHORIZATION DEFAULT", "session admin"),
    ("RESET SESSION AUTHORIZATION", "session admin"),
    ('SET "role" TO x', "session admin"),
    ("SET default_transaction_read_only = off", "session admin"),
    ("SET default_transaction_read_only TO on", "session admin"),
    ("SET LOCAL transaction_read_only TO off", "session admin"),
    ("SET SESSION transaction_read_only = false", "session admin"),
    ("RESET default_transaction_read_only", "session admin"),
    ("SET standard_conforming_strings = off", "session admin"),
    ("SET backslash_quote = on", "session admin"),
    ("SET session_replication_role = replica", "session admin"),
    ("SET row_security = off", "session admin"),
    ("SET log_statement = 'none'", "session admin"),
    ("SET LOG_MIN_DURATION_STATEMENT = -1", "session admin"),
    ("SET pgaudit.log = 'none'", "session admin"),
    ("SET hoop.principal = 'x'", "session admin"),
    ("SET track_activities = off", "session admin"),
    ("SET TRANSACTION READ WRITE", "session admin"),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE", "session admin"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "session admin"),
    ("BEGIN READ WRITE", "admin"),
    ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE", "admin"),
    ("BEGIN TRANSACTION READ ONLY, READ WRITE", "admin"),
    ("ALTER SYSTEM SET work_mem = '1GB'", "admin"),
    ("ALTER SYSTEM RESET ALL", "admin"),
    ("LOAD 'auto_explain'", "admin"),
    ("VACUUM", "admin"),
    ("VACUUM (FULL, ANALYZE) t", "admin"),
    ("ANALYZE t", "admin"),
    ("CLUSTER t USING i", "admin"),
    ("REINDEX TABLE t", "admin"),
    ("CHECKPOINT", "admin"),
    ("PREPARE TRANSACTION 'gid'", "admin"),
    ("COMMIT PREPARED 'gid'", "admin"),
    ("ROLLBACK PREPARED 'gid'", "admin"),
    # -- client encodings (never cacheable: the value is a literal)
    ("SET client_encoding = 'SJIS'", "session admin"),
    ("SET client_encoding TO 'BIG5'", "session admin"),
    ("SET NAMES 'GBK'", "session admin"),
    ("SET client_encoding = sjis", "session admin"),
    ("SET client_encoding = 'win932'", "session admin"),
    ("SET client_encoding = 'no-such-encoding'", "session admin"),
    ("SET client_encoding = 'UTF8'", "session"),
    ("SET client_encoding = 'utf-8'", "session"),
    ("SET NAMES 'LATIN1'", "session"),
    ("SET client_encoding TO 'WIN1252'", "session"),
    ("SET client_encoding TO 'SQL_ASCII'", "session"),
    ("SET client_encoding TO 'EUC_JP'", "session"),
    ("SET client_encoding TO DEFAULT", "session"),
    ("RESET client_encoding", "session"),
    # -- session
    ("BEGIN", "session"),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE", "session"),
    ("START TRANSACTION READ ONLY", "session"),
    ("COMMIT", "session"),
    ("COMMIT AND CHAIN", "session"),
    ("END", "session"),
    ("ROLLBACK", "session"),
    ("ABORT", "session"),
    ("SAVEPOINT s1", "session"),
    ("RELEASE SAVEPOINT s1", "session"),
    ("ROLLBACK TO SAVEPOINT s1", "session"),
    ("SET application_name = 'psql'", "session"),
    ("SET search_path TO public, other", "session"),
    ("SET LOCAL statement_timeout = '5s'", "session"),
    ("SET TIME ZONE 'UTC'", "session"),
    ("SET TIME ZONE LOCAL", "session"),
    ("SET datestyle TO ISO, MDY", "session"),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "session"),
    ("SET TRANSACTION READ ONLY", "session"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "session"),
    ("SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", "session"),
    ("SET CONSTRAINTS ALL DEFERRED", "session"),
    ("SHOW work_mem", "session"),
    ("SHOW ALL", "session"),
    ("SHOW role", "session"),
    ("RESET work_mem", "session"),
    ("RESET ALL", "session"),
    ("DISCARD ALL", "session"),
    ("LISTEN chan", "session"),
    ("UNLISTEN *", "session"),
    ("DEALLOCATE p_read", "session"),
    ("DEALLOCATE ALL", "session"),
    ("CLOSE c", "session"),
    ("CLOSE ALL", "session"),
    # -- PREPARE / EXECUTE
    ("PREPARE q AS SELECT * FROM t WHERE id = $1", "session read"),
    ("PREPARE q (int) AS DELETE FROM t", "session " + RW),
    ("PREPARE q AS UPDATE t SET x = $1 WHERE id = $2", "session write"),
    ("EXECUTE p_read", "read"),
    ("EXECUTE p_write(1, 'x')", "write"),
    ("EXECUTE p_wipe", RW),
    ('EXECUTE "P_Admin"', "read admin"),
    ("EXECUTE P_Admin", "unknown"),
    ("EXECUTE nope", "unknown"),
    ("EXECUTE p_read(pg_read_file('x'))", "read admin"),
    ("CREATE TABLE t2 AS EXECUTE p_read", "ddl read"),
    ("CREATE TABLE t2 AS EXECUTE nope", "ddl unknown"),
    ("PREPARE q AS DELETE FROM t; EXECUTE q", "session unknown " + RW),
]


def _classes(expected: str) -> frozenset[str]:
    return frozenset(expected.split())


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier()


@pytest.mark.parametrize(("sql", "expected"), CORPUS, ids=[f"{i:03d}" for i in range(len(CORPUS))])
def test_corpus(classifier: Classifier, sql: str, expected: str) -> None:
    result = classifier.classify(sql, PREPARED)
    assert result.classes == _classes(expected), (sql, result)
    assert result.classes <= frozenset(PG_CLASSES)
    if result.classes - {"read"}:
        assert result.reasons, "every non-read class comes with a reason"


def test_corpus_is_large_and_covers_every_class() -> None:
    assert len(CORPUS) >= 150
    assert len({sql for sql, _ in CORPUS}) == len(CORPUS), "duplicate corpus rows"
    seen = frozenset().union(*(_classes(expected) for _, expected in CORPUS))
    assert seen == frozenset(PG_CLASSES)


# -- cacheability


@pytest.mark.parametrize(
    "sql",
    [
        "EXECUTE p_read",
        "EXECUTE nope",
        "CREATE TABLE t2 AS EXECUTE p_read",
        "EXPLAIN ANALYZE EXECUTE p_read",
        "SELECT set_config('application_name', 'x', false)",
        "SELECT set_config('role', 'x', false)",
        "SET client_encoding = 'UTF8'",
        "SET NAMES 'SJIS'",
        "SELECT 1; SET client_encoding TO DEFAULT",
        "SELEC 1",
        "SELECT U&'x' UESCAPE 'ab'",
        "SELECT 1\0; DROP TABLE t",
        "PREPARE q AS SELECT set_config('a', 'b', false)",
    ],
)
def test_not_cacheable(classifier: Classifier, sql: str) -> None:
    assert not classifier.classify(sql, PREPARED).cacheable


@pytest.mark.parametrize(
    "sql",
    [
        "",
        "SELECT 1",
        "DELETE FROM t",
        "SET role = 'x'",
        "SET application_name = 'x'",
        "PREPARE q AS SELECT 1",
        "COPY t FROM '/tmp/x'",
        "EXPLAIN (ANALYZE false) SELECT 1",
    ],
)
def test_cacheable(classifier: Classifier, sql: str) -> None:
    assert classifier.classify(sql, PREPARED).cacheable


# -- reasons, prepares, the FunctionCall message


def test_reasons(classifier: Classifier) -> None:
    assert classifier.classify("DELETE FROM t").reasons == ("DELETE without WHERE",)
    assert classifier.classify("UPDATE t SET x = 1").reasons == ("UPDATE without WHERE",)
    assert classifier.classify("SELECT * FROM pg_read_file('x')").reasons == ("calls pg_read_file()",)
    assert classifier.classify("SELEC 1").reasons == ('syntax error at or near "SELEC"',)
    assert classifier.classify("SELECT 1").reasons == ()
    assert classifier.classify("DROP TABLE t; DROP VIEW v").reasons == ("DROP TABLE", "DROP VIEW")
    assert classifier.classify("EXECUTE nope").reasons == ('EXECUTE of unknown prepared statement "nope"',)
    assert classifier.classify("SET ROLE x").reasons == ("SET ROLE",)
    assert "BEGIN ... READ WRITE" in classifier.classify("BEGIN READ WRITE").reasons
    # a plain EXPLAIN does not run its statement, so its reasons do not show up either
    assert classifier.classify("EXPLAIN DELETE FROM t").reasons == ()


def test_empty_query(classifier: Classifier) -> None:
    assert classifier.classify(" -- nothing\n;") == Classification(frozenset(), True, (), ())


def test_prepares(classifier: Classifier) -> None:
    result = classifier.classify("PREPARE a AS SELECT 1; PREPARE b (int) AS DELETE FROM t WHERE id = $1")
    assert result.prepares == (("a", frozenset({"read"})), ("b", frozenset({"write"})))
    assert result.classes == {"session", "read", "write"}
    assert classifier.classify("SELECT 1").prepares == ()
    # the body of a prepared statement is classified like the statement itself
    body = classifier.classify("PREPARE w AS WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
    assert body.prepares == (("w", frozenset({"read", "write", "write-without-where"})),)


def test_execute_uses_prepared_map(classifier: Classifier) -> None:
    assert classifier.classify("EXECUTE x").classes == {"unknown"}
    assert classifier.classify("EXECUTE x", {"x": frozenset({"ddl"})}).classes == {"ddl"}
    assert classifier.classify("EXECUTE x", {}).classes == {"unknown"}


def test_function_call_message(classifier: Classifier) -> None:
    result = classifier.function_call()
    assert result.classes == {"admin"}
    assert not result.cacheable
    assert result.reasons


# -- function lists from [sql]


def test_default_lists() -> None:
    assert {"pg_read_file", "lo_import", "dblink", "pg_terminate_backend"} <= DEFAULT_ADMIN_FUNCTIONS
    assert {"setval", "nextval", "lo_unlink"} <= DEFAULT_WRITE_FUNCTIONS
    assert all(name == name.lower() for name in DEFAULT_ADMIN_FUNCTIONS | DEFAULT_WRITE_FUNCTIONS)
    assert Classifier(None).admin_functions == DEFAULT_ADMIN_FUNCTIONS


def test_config_replaces_the_lists() -> None:
    config = SqlConfig.model_validate({"admin_functions": ["My_Danger"], "write_functions": ["bump"]})
    classifier = Classifier(config)
    assert classifier.classify("SELECT my_danger()").classes == {"read", "admin"}
    assert classifier.classify("SELECT s.BUMP(1)").classes == {"read", "write"}
    # the built-in entries are gone
    assert classifier.classify("SELECT pg_read_file('x')").classes == {"read"}
    assert classifier.classify("SELECT nextval('s')").classes == {"read"}
    # set_config is a rule of its own, not a list entry
    assert classifier.classify("SELECT set_config('role', 'x', false)").classes == {"read", "admin"}


def test_config_extends_the_lists() -> None:
    config = SqlConfig.model_validate(
        {"extra_admin_functions": ["my_danger"], "extra_write_functions": ["bump"]}
    )
    classifier = Classifier(config)
    assert classifier.classify("SELECT my_danger(), pg_read_file('x')").classes == {"read", "admin"}
    assert classifier.classify("SELECT bump(), nextval('s')").classes == {"read", "write"}
    assert classifier.classify("SELECT pg_read_file('x')").reasons == ("calls pg_read_file()",)


def test_config_empty_lists() -> None:
    classifier = Classifier(SqlConfig.model_validate({"admin_functions": [], "write_functions": []}))
    assert classifier.classify("SELECT pg_read_file('x'), nextval('s')").classes == {"read"}


# -- protected settings and encodings


def test_protected_settings() -> None:
    assert {"role", "session_authorization", "default_transaction_read_only"} <= PROTECTED_SETTINGS
    assert {"transaction_read_only", "standard_conforming_strings", "backslash_quote"} <= PROTECTED_SETTINGS
    assert "client_encoding" not in PROTECTED_SETTINGS
    assert "log_" in PROTECTED_PREFIXES
    assert is_protected_setting("ROLE")
    assert is_protected_setting("Log_Statement")
    assert not is_protected_setting("application_name")
    assert not is_protected_setting("search_path")


@pytest.mark.parametrize(
    "name",
    [
        "UTF8",
        "utf-8",
        "Unicode",
        "SQL_ASCII",
        "LATIN1",
        "latin9",
        "WIN1252",
        "windows-1251",
        "ISO_8859_5",
        "KOI8R",
        "EUC_JP",
        "EUC_KR",
        "MULE_INTERNAL",
    ],
)
def test_safe_encodings(name: str) -> None:
    assert is_safe_client_encoding(name)


@pytest.mark.parametrize(
    "name",
    [
        "SJIS",
        "Shift_JIS",
        "SHIFT_JIS_2004",
        "MSKANJI",
        "BIG5",
        "WIN950",
        "GBK",
        "CP936",
        "UHC",
        "WIN949",
        "GB18030",
        "JOHAB",
        "WIN932",
        "",
        "nonsense",
    ],
)
def test_unsafe_encodings(name: str) -> None:
    assert not is_safe_client_encoding(name)


# -- coverage of the parser's statement types


def test_every_statement_type_is_handled() -> None:
    """A statement type the parser gains in an upgrade shows up here (meanwhile it is ``unknown``)."""
    kinds = {
        name
        for name, cls in vars(pglast.ast).items()
        if inspect.isclass(cls) and issubclass(cls, pglast.ast.Node) and name.endswith("Stmt")
    }
    # never a statement of its own in parsed SQL text: the wrapper, PL/pgSQL and planner nodes
    not_in_sql = {"RawStmt", "PLAssignStmt", "SetOperationStmt"}
    assert kinds - set(_HANDLERS) == not_in_sql


def test_unrecognised_statement_is_unknown(classifier: Classifier, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(_HANDLERS, "CheckPointStmt")
    result = classifier.classify("CHECKPOINT")
    assert result.classes == {"unknown"}
    assert result.reasons == ("unsupported statement (CheckPointStmt)",)


def test_deep_nesting_is_not_an_error(classifier: Classifier) -> None:
    deep = "SELECT " + "(SELECT " * 100 + "pg_read_file('x')" + ")" * 100
    assert classifier.classify(deep).classes == {"read", "admin"}
    too_deep = "SELECT " + "(SELECT " * 2000 + "1" + ")" * 2000
    assert classifier.classify(too_deep).classes == {"unknown"}

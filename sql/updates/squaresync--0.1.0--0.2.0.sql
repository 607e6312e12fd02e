-- squaresync--0.1.0--0.2.0.sql: from release 0.1.0 to the development version 0.2.0.
-- Every change to sql/install/*.sql after 0.1.0 gets its migration here, so that an existing
-- installation reaches exactly what a fresh CREATE EXTENSION builds (test/e2e/test_upgrade.py
-- compares the two catalogs object by object). So far 0.2.0 equals 0.1.0.

\echo Use "ALTER EXTENSION squaresync UPDATE TO '0.2.0'" to load this file. \quit

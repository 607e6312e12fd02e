-- squaresync--<version>.sql is built by the Makefile from sql/install/*.sql in name order, one file per
-- concern. Schema "square" holds the synced data; schema "squaresync" holds the control plane
-- (connection, runs, watermarks, audit, staging, functions). The C++ table descriptions
-- (src/core/tables.cpp) must list the same columns as the DDL: squaresync._schema_mismatches()
-- compares them and the regression suite asserts it returns nothing.

\echo Use "CREATE EXTENSION squaresync" to load this file. \quit


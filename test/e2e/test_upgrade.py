"""test_upgrade.py: the upgrade path. An installation of release 0.1.0 with synced data and the
seller's own rows, updated with ALTER EXTENSION UPDATE, keeps every row and ends with exactly the
objects a fresh CREATE EXTENSION builds (every table, column, constraint, index, view and function
compared, and the rows of squaresync.synced_tables), so an update script can never lag behind sql/install."""

from fakesquare import assert_matches_fake

CATALOG = """
SELECT 'column' AS kind, format('%s.%s.%s', table_schema, table_name, column_name),
       concat_ws(' ', data_type, udt_name, is_nullable, column_default, ordinal_position)
  FROM information_schema.columns WHERE table_schema IN ('square', 'squaresync')
UNION ALL
SELECT 'constraint', format('%s.%s', conrelid::regclass, conname), pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace IN ('square'::regnamespace, 'squaresync'::regnamespace)
UNION ALL
SELECT 'index', format('%s.%s', schemaname, indexname), indexdef
  FROM pg_indexes WHERE schemaname IN ('square', 'squaresync')
UNION ALL
SELECT 'view', format('%s.%s', schemaname, viewname), definition
  FROM pg_views WHERE schemaname IN ('square', 'squaresync')
UNION ALL
SELECT 'function', p.oid::regprocedure::text, pg_get_functiondef(p.oid) || coalesce(array_to_string(p.proacl, ','), '')
  FROM pg_proc p WHERE p.pronamespace = 'squaresync'::regnamespace
UNION ALL
SELECT 'table', c.oid::regclass::text, concat_ws(' ', c.relkind, c.relpersistence, array_to_string(c.relacl, ','))
  FROM pg_class c WHERE c.relnamespace IN ('square'::regnamespace, 'squaresync'::regnamespace)
UNION ALL
SELECT 'dumped', x::regclass::text, '' FROM pg_extension e, unnest(e.extconfig) x WHERE e.extname = 'squaresync'
UNION ALL
SELECT 'synced_tables row', t.table_name, row_to_json(t)::text FROM squaresync.synced_tables t
"""


def catalog(con):
    return {(k, name): d for k, name, d in con.execute(CATALOG).fetchall()}


def test_update_from_0_1_0_keeps_data_and_equals_a_fresh_install(cluster, fake):
    admin = cluster.connect()
    for db in ("upgraded", "fresh"):
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {db}")
    old = cluster.connect("upgraded")
    old.execute("CREATE EXTENSION squaresync VERSION '0.1.0'")
    old.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
    f = old.execute("SELECT squaresync.foundation()").fetchone()[0]
    # 0.1.0's rollback left each stream's last success on the run it undid; the update repairs it.
    fake.mutate({"vendors": {"update": 1}})
    inc = old.execute("SELECT squaresync.incremental()").fetchone()[0]
    old.execute("SELECT squaresync.rollback(%s, 'before the update')", (inc,))
    assert {r for (r,) in old.execute("SELECT last_success_run_id FROM squaresync.stream_state")} == {inc}
    old.execute("INSERT INTO square.operating_seasons (merchant_id, name, starts_on, ends_on)"
                " SELECT merchant_id, 'Summer', '2026-06-01', '2026-08-31' FROM squaresync.connection")
    counts = {t: old.execute(f"SELECT count(*) FROM square.{t}").fetchone()[0]
              for (t,) in old.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'square'").fetchall()}

    old.execute("ALTER EXTENSION squaresync UPDATE")
    assert old.execute("SELECT extversion FROM pg_extension WHERE extname = 'squaresync'").fetchone()[0] == "0.2.0"
    assert {r for (r,) in old.execute("SELECT last_success_run_id FROM squaresync.stream_state")} == {f}
    after = {t: old.execute(f"SELECT count(*) FROM square.{t}").fetchone()[0] for t in counts}
    assert after == counts
    assert old.execute("SELECT name FROM square.operating_seasons").fetchall() == [("Summer",)]
    # The updated installation still syncs.
    fake.mutate({"orders": {"update": 2}})
    old.execute("SELECT squaresync.incremental()")
    assert_matches_fake(old, fake)

    new = cluster.connect("fresh")
    new.execute("CREATE EXTENSION squaresync")
    got, want = catalog(old), catalog(new)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    assert not (missing or extra or differ), (
        f"the updated installation differs from a fresh one: missing {missing[:5]}, extra {extra[:5]},"
        f" different {differ[:5]}")
    old.close()
    new.close()
    for db in ("upgraded", "fresh"):
        admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
    admin.close()

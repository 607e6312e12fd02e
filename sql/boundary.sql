-- boundary: no C++ exception reaches PostgreSQL and no PostgreSQL error longjmps over live C++ objects.
-- A C++ exception thrown inside a SQL function arrives as an ordinary ERROR ...
SELECT squaresync._boundary_selftest('cpp_throw');
-- ... and the session goes on.
SELECT 'session survived' AS after_cpp_exception;
-- A PostgreSQL ERROR raised under the guard arrives in C++ as an exception with its SQLSTATE and
-- message, and the destructors of the two C++ objects alive around it run.
SELECT squaresync._boundary_selftest('pg_error_unwinds');
-- An error meant for the user carries a hint.
SELECT squaresync._boundary_selftest('nonsense');
-- Repeated many times, nothing leaks into the session's state.
SELECT count(*) FROM generate_series(1, 200) g, LATERAL squaresync._boundary_selftest('pg_error_unwinds') r
WHERE r LIKE '%destructors_run=2';

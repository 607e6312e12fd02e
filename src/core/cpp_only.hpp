// cpp_only.hpp: included first by every pure C++ source file (never by a header the boundary
// shares). It fails the build if postgres.h came before it, so the HTTP, JSON and retry code never
// mixes with PostgreSQL's longjmp-based error handling.
#pragma once
#ifdef PG_VERSION_NUM
#error "This file is pure C++: it must not be compiled with postgres.h included"
#endif

"""Many rooms, one view: each box's SQLite log pushed to a central PostgreSQL (`sync`), its schema and
connection (`central`), and the fleet read back for reports (`reader`). Needs the fleet extra (psycopg);
the venue install does without it."""

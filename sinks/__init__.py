"""Resource-library writer (PostgreSQL) and subscription fan-out. Empty until the merge stage
lands (issue 4)."""

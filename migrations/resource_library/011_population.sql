-- Decision support (streams/events/population.py, sinks/library/population.py): the actual resident
-- population per district / street / community, five-year age band and sex, kept current by the
-- life-event stage from golden person changes and the daily pass (not recounted nightly); and when each
-- golden change was applied, for the freshness of the figures (department commit -> cells updated).
CREATE TABLE population_cell (
    district   text NOT NULL,
    street     text NOT NULL,
    community  text NOT NULL,
    age_band   text NOT NULL,
    sex        text NOT NULL,
    residents  integer NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (district, street, community, age_band, sex)
);

CREATE TABLE population_applied (   -- the newest changes applied (kept short: the last hour)
    applied_at   timestamptz NOT NULL,
    committed_ms bigint NOT NULL
);
CREATE INDEX population_applied_at ON population_applied (applied_at);

-- the population as of the last band move: the daily pass of each day moves the birthdays once
CREATE TABLE population_pass (
    day         date PRIMARY KEY,
    moved       integer NOT NULL,
    finished_at timestamptz NOT NULL
);

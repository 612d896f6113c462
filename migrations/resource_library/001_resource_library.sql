-- The resource library: golden records, identity links, field provenance, history.
--
-- Every golden row is derived from its *contributions* (the latest GLDM candidate
-- of each source row that links to it) by survivorship; nothing here is written
-- except by the merge code (sinks/library.py).

-- ----------------------------------------------------------------- golden records

CREATE TABLE person (
    person_id      text PRIMARY KEY,            -- canonical id: the RIC it was first known by, or P~<hash of its first source row>
    ric            text UNIQUE,
    name           text,
    name_key       text,                        -- toneless pinyin of the name: a blocking key for matching
    gender         text,                        -- GB/T 2261.1
    ethnicity      text,                        -- GB/T 3304
    birth_date     date,
    marital_status text,                        -- GB/T 2261.2
    death_date     date,
    household_no   text,
    address        jsonb,
    mother_ric     text,
    father_ric     text,
    version        integer NOT NULL,
    source_committed_at timestamptz,            -- commit time of the newest source change that changed it
    updated_at     timestamptz NOT NULL
);
CREATE INDEX person_birth_date ON person (birth_date);
CREATE INDEX person_name_key ON person (name_key);
CREATE INDEX person_ric_body ON person (left(ric, 17));
CREATE INDEX person_birth_month_day ON person ((extract(month FROM birth_date)), (extract(day FROM birth_date)));

CREATE TABLE legal_entity (
    entity_id       text PRIMARY KEY,           -- E~<market registration number> (stable whether or not a USCC came with it)
    uscc            text,
    registration_no text UNIQUE,
    name            text,
    kind            text,
    legal_representative_name text,
    legal_representative_ric  text,
    registered_capital text,
    established_date date,
    status          text,
    deregistered_date date,
    address         jsonb,
    version         integer NOT NULL,
    source_committed_at timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX legal_entity_uscc ON legal_entity (uscc);

CREATE TABLE house (
    house_id      text PRIMARY KEY,             -- the city's house code
    building_code text,
    address       jsonb,
    floor_area    text,
    use           text,
    version       integer NOT NULL,
    source_committed_at timestamptz,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX house_building ON house (building_code);

CREATE TABLE certificate (
    certificate_id   text PRIMARY KEY,          -- <type>:<number>
    certificate_type text NOT NULL,
    certificate_no   text,
    holder_ric       text,
    holder_name      text,
    holder_person_id text,                      -- resolved holder (by RIC, or the person of the same source row)
    issued_date      date,
    valid_until      date,
    issuer           text,
    status           text,
    details          jsonb,
    version          integer NOT NULL,
    source_committed_at timestamptz,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX certificate_holder ON certificate (holder_person_id);
CREATE INDEX certificate_holder_ric ON certificate (holder_ric);

CREATE TABLE relationship (
    relationship_id   text PRIMARY KEY,         -- <type>:<subject ref>:<object ref>
    type              text NOT NULL,
    subject_ric       text,
    subject_name      text,
    subject_person_id text,
    object_kind       text NOT NULL,
    object_id         text,
    object_name       text,
    object_person_id  text,                     -- when the object is a person
    valid_from        date,
    valid_to          date,
    version           integer NOT NULL,
    source_committed_at timestamptz,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX relationship_subject ON relationship (subject_person_id);
CREATE INDEX relationship_subject_ric ON relationship (subject_ric);
CREATE INDEX relationship_object ON relationship (object_kind, object_id);
CREATE INDEX relationship_object_person ON relationship (object_person_id);

CREATE TABLE social_insurance (
    fact_id          text PRIMARY KEY,          -- <insured no>|<month>|<insurance type>
    person_ric       text,
    person_id        text,                      -- resolved through the insured person's registration
    insured_no       text NOT NULL,
    month            text NOT NULL,
    insurance_type   text NOT NULL,
    employer_uscc    text,
    employer_name    text,
    contribution_base text,
    personal_amount  text,
    employer_amount  text,
    version          integer NOT NULL,
    source_committed_at timestamptz,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX social_insurance_person ON social_insurance (person_id, month);
CREATE INDEX social_insurance_insured ON social_insurance (insured_no);
CREATE INDEX social_insurance_person_ric ON social_insurance (person_ric);

-- ----------------------------------------------------------------- contributions and identity

-- One row per source row and role: its latest candidate, its position in that row's
-- change stream, and the golden record it is linked to (the identity link).
CREATE TABLE contribution (
    department   text NOT NULL,
    source_table text NOT NULL,
    primary_key  text NOT NULL,
    role         text NOT NULL,
    entity       text NOT NULL,
    canonical_id text,                          -- NULL while the link waits in the review queue
    position     numeric[] NOT NULL,            -- (commit LSN, change LSN) or (batch date, line)
    retracted    boolean NOT NULL,
    record       jsonb NOT NULL,                -- the GLDM candidate as last merged
    committed_at timestamptz,
    merged_at    timestamptz NOT NULL,
    method       text NOT NULL,                 -- how the link was made: ric, uscc, code, sticky, match, review, new
    score        real,
    evidence     jsonb,
    PRIMARY KEY (department, source_table, primary_key, role)
);
CREATE INDEX contribution_golden ON contribution (entity, canonical_id);
-- late linking finds persons made from a flagged RIC by its first 17 characters
CREATE INDEX contribution_person_ric_body ON contribution (left(record->>'ric', 17)) WHERE entity = 'person';

CREATE TABLE review_queue (
    review_id    bigserial PRIMARY KEY,
    department   text NOT NULL,
    source_table text NOT NULL,
    primary_key  text NOT NULL,
    role         text NOT NULL,
    entity       text NOT NULL,
    candidates   jsonb NOT NULL,                -- [{canonical_id, score, evidence}] best first
    status       text NOT NULL DEFAULT 'open',  -- open, accepted, rejected
    decided_id   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz,
    UNIQUE (department, source_table, primary_key, role)
);
CREATE INDEX review_open ON review_queue (status) WHERE status = 'open';

-- For every golden field: the source row and position its value survived from,
-- and the values of other sources it beat (conflicts), one row per golden record:
-- {"sources": [{department, table, primary_key, role, position, committed_at}, ...],
--  "fields": {field: {"source": <index in sources>, "conflicts": [{department, table, primary_key, value}]}
--            or {"derived_from": "ric"}}
CREATE TABLE field_provenance (
    entity       text NOT NULL,
    canonical_id text NOT NULL,
    fields       jsonb NOT NULL,
    PRIMARY KEY (entity, canonical_id)
);

-- Bitemporal history: each golden version with the time it became true in the
-- source (valid_from) and the time the library recorded it (recorded_at).
CREATE TABLE golden_history (
    entity       text NOT NULL,
    canonical_id text NOT NULL,
    version      integer NOT NULL,
    data         jsonb,                         -- NULL: the golden record was withdrawn
    valid_from   timestamptz,
    recorded_at  timestamptz NOT NULL,
    cause        jsonb NOT NULL,                -- the source change that produced this version
    PRIMARY KEY (entity, canonical_id, version)
);

-- ----------------------------------------------------------------- delivery bookkeeping

-- Consumed offsets, written in the same transaction as the merge they caused.
CREATE TABLE consumer_offset (
    group_id  text NOT NULL,
    topic     text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);

-- Transactional outbox for gldm.<entity>.changes: written with the merge, published after commit.
CREATE TABLE outbox (
    outbox_id bigserial PRIMARY KEY,
    topic     text NOT NULL,
    key       text NOT NULL,
    value     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- T+1 batches: one row per (department, batch date) once completed, with its reconciliation.
CREATE TABLE batch_run (
    department  text NOT NULL,
    batch_date  date NOT NULL,
    file        text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    report      jsonb NOT NULL,
    PRIMARY KEY (department, batch_date, started_at)
);

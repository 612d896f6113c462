-- "Services for me" (streams/events/services.py, sinks/library/residents.py): a resident's profile reads
-- its children (as their mother or father) and the enterprises it represents by index; the services each
-- person currently qualifies for are kept, so that SERVICE_ELIGIBLE is published when one is gained.
CREATE INDEX person_mother_ric ON person (mother_ric);
CREATE INDEX person_father_ric ON person (father_ric);
CREATE INDEX legal_entity_representative_ric ON legal_entity (legal_representative_ric);

CREATE TABLE service_eligibility (
    person_id text NOT NULL,
    service   text NOT NULL,
    status    text NOT NULL,               -- eligible / missing_evidence
    since     date NOT NULL,
    PRIMARY KEY (person_id, service)
);

-- Identity resolution's blocking keys (streams.resolve.matching.keys): every key of every source row
-- linked to a person, so a person is found by any way it was ever written (pinyin and birth year, birth
-- date and gender and district, name and district, a masked given-name character, a RIC body, a declared
-- identifier ...). Written by the resolve stage with the contributions. An existing library is indexed
-- once by `kintsmesh resolve reindex`.
CREATE TABLE person_key (
    key       text NOT NULL,
    person_id text NOT NULL,
    PRIMARY KEY (key, person_id)
);
CREATE INDEX person_key_person ON person_key (person_id);

-- open review items are found again by the keys of the row waiting, when a person near it gains evidence
ALTER TABLE review_queue ADD COLUMN keys text[] NOT NULL DEFAULT '{}';
CREATE INDEX review_queue_open_keys ON review_queue USING gin (keys) WHERE status = 'open';

-- persons by valid RIC, from their source rows (a person resolved a moment ago is not golden yet)
CREATE INDEX contribution_person_ric ON contribution ((record->>'ric')) WHERE entity = 'person';

-- Debezium's heartbeat.action.query (connect/connectors/_defaults.json) updates this row every
-- heartbeat, so that the replication slot of this database advances even while none of its captured
-- tables changes: the cluster's other databases (the resource library above all) keep writing WAL,
-- which a quiet department's slot would otherwise hold back without bound.
CREATE TABLE kintsmesh_heartbeat (id integer PRIMARY KEY, beat_at timestamptz NOT NULL);
INSERT INTO kintsmesh_heartbeat VALUES (1, now());

-- The publication Debezium reads (publication.autocreate.mode=disabled): every table, the heartbeat
-- included; the connector's table.include.list decides what becomes change events. Replaces the one
-- an earlier connector created for its table list only.
DROP PUBLICATION IF EXISTS kintsmesh_hrss;
CREATE PUBLICATION kintsmesh_hrss FOR ALL TABLES;

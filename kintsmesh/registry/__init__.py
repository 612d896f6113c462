"""The schema store: Avro schemas by subject and version, kept in a compacted Kafka topic.

Stands in for a Confluent-compatible schema registry, which could not be assembled
from Maven Central here (see README). Messages use the Avro single-object encoding
(a 2-byte marker, the schema's CRC-64-AVRO fingerprint, the Avro body), so any
Avro library can read them given the schemas, which live in ``_kintsmesh_schemas``.
"""

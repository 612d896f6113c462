"""The schema registry: Avro schemas by subject and version, behind the Confluent REST API.

``server`` serves the API over ``log`` (a compacted Kafka topic replayed into a ``catalog``);
workers use ``client`` (Confluent's stock ``SchemaRegistryClient``) and ``codec`` (the Confluent
wire format), so any Confluent-compatible registry can take the server's place.
"""

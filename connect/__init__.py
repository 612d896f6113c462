"""Capture: one Debezium PostgreSQL connector per department, managed through the Kafka Connect REST API."""

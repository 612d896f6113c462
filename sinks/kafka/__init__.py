"""Kafka plumbing shared by every stage: the transactional consumer base (``stage``), offsets kept with
the resource library (``offsets``) and the table -> topic publisher (``relay``). Clients themselves are
built in ``kintsmesh.kafka``; topic names live in ``kintsmesh.topics``."""

"""Life events: rules (``rules.yaml`` + predicates) over golden changes and the calendar."""

"""The T+1 path: nightly department extracts (CSV or Parquet) through the same normalize -> resolve ->
merge code as live changes (``load``), and writing such an extract from a department database."""

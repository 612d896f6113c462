"""The Faust app and its agents (normalize, resolve, merge, life_events) and the pure domain
logic they call. Empty until the normalize stage lands (issue 3): capture ends at raw.<dept>.*."""

"""The runtime that runs a model tuned on MMAT data: RR (live tools), ORR (tools first) or baseline."""

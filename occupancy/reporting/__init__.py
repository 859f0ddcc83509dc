"""Read-only analysis of the traffic log: the log read (`queries`), summarised (`summary`), written
out as text (`render`) or drawn (`plot`)."""

"""Read-only analysis of the traffic log: the log read (`queries`), summarised (`summary`), written
out as text (`render`) or drawn (`plot`); `fleet` writes out and draws the fleet report, whose rows
occupancy/fleet/reader.py sums up from the central store."""

"""Analysis of stored zoos: the member table every report, plot, claim and probe reads
(:mod:`.table`)."""

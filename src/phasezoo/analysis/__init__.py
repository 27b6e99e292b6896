"""Analysis of stored zoos: the member table every other module here reads (:mod:`.table`),
text reports of phases and summaries (:mod:`.report`), phase plots (:mod:`.plots`) and the
paper's claims as checks (:mod:`.claims`)."""

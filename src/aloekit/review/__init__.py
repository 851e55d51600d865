"""Blind pairwise review of models' answers by clinicians: the web app (``aloe review serve``), its vote store,
and the statistics of the votes (``aloe review results``)."""

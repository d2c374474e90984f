"""Learning to rank from biased clicks (ULTR): a LETOR-style feature set from TREC DL19
(``features``), position-based click simulation (``clicks``), naive / IPW / DLA learners with
linear and MLP rankers (``train``) and the ``ltr`` commands (``cli``)."""

"""Analyses of pretraining designs (``graphmvp-analyze``): the masking-design study's
information-theoretic check (:mod:`graphmvp.analysis.mutual_information`)."""

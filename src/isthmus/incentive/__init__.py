"""Incentives: each party's contribution to a job's model, and a tamper-evident ledger every party holds.

- :mod:`~isthmus.incentive.shapley`: Shapley values, exact for a few players, sampled beyond;
- :mod:`~isthmus.incentive.contribution`: the report of a job's contributions and its reward split;
- :mod:`~isthmus.incentive.vertical` and :mod:`~isthmus.incentive.horizontal`: the value of a coalition
  in vertical jobs (trained federatedly) and horizontal jobs (rebuilt from per-round updates);
- :mod:`~isthmus.incentive.record`, :mod:`~isthmus.incentive.ledger`, :mod:`~isthmus.incentive.endorse`,
  :mod:`~isthmus.incentive.verify`: ledger records, their SQLite replicas, unanimous endorsement over
  the transport, and verification of chains, signatures and replicas.
"""

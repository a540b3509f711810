"""Sieve (RFC 5228), the language in which people say what happens to their mail at delivery (issue 15).

- `grammar`: a script's text to a tree of commands and tests (errors with line and column, limits), and back.
- `checker`: the tree checked against per-command specs (the base language and the extensions of
  `SUPPORTED`; docs/decisions/0081, 0084); an `Extension` adds commands and tests (the test suite's).
- `matching`: comparators and match types (relational, match variables).
- `interpreter`: the run of a checked script against a message, its envelope and a `SieveContext`, deciding
  the actions without doing them; `Hooks` answer commands and tests it does not have.
- `stage`: the delivery stage that makes the decision the delivery's plan (docs/decisions/0082).
- ManageSieve, the protocol that stores scripts, is `postoffice.managesieve` (0083); the Pigeonhole-format
  test suite runs with tests/sieve/testsuite.py and bench/sieve_svtest.py (0085).
"""

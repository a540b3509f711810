"""Sieve (RFC 5228), the language in which people say what happens to their mail at delivery (issue 15).

Built so far: the syntax (`postoffice.sieve.grammar`): a script's text to a tree of commands and tests, errors
with line and column, limits on what a script may ask of the parser, and the way back from a tree to text;
the check (`postoffice.sieve.checker`) of the base language and its first extensions; the run
(`postoffice.sieve.interpreter`), which decides the actions without doing them; and the delivery stage
(`postoffice.sieve.stage`), which makes the decision the delivery's plan (docs/decisions/0082). ManageSieve
and the other extensions come next.
"""

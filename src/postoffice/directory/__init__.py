"""The directory: domains, accounts and aliases as the protocols see them.

- `address`: the one canonical form of addresses (lookups, keys, the login guard, the CLI).
- `passwords`: argon2id password hashes and generated passwords.
- `resolver`: which accounts a recipient address delivers to (aliases, catch-alls, plus-addressing).

The data itself lives in the store (`postoffice.store`); this package holds the rules applied to it.
"""

"""``megflow-mp token add|list|revoke``: manage a tokens file (:mod:`.tokens`).

::

    megflow-mp token add NAME --role viewer|operator --file tokens.toml   # prints the token, last line
    megflow-mp token list --file tokens.toml                              # names, roles, created
    megflow-mp token revoke NAME --file tokens.toml                       # servers stop taking it at once

``add`` prints the new token once, as its last line of output (a script can take ``| tail -n 1``);
only its salted hash is stored. The file is created with mode 0600.
"""

from __future__ import annotations

import argparse

from .tokens import ROLES, add_token, read_tokens, revoke_token


def add_parser(sub) -> None:
    p = sub.add_parser("token", help="manage the tokens of a tokens file ([auth] tokens, run --auth-tokens)",
                       description="Manage API tokens: add (prints the token once), list, revoke.")
    ops = p.add_subparsers(dest="token_command", required=True)
    add = ops.add_parser("add", help="create a token (printed once, as the last line)")
    add.add_argument("name", help="1 to 64 letters, digits, '_', '.', '-': who uses it (logged on each request)")
    add.add_argument("--role", required=True, choices=ROLES,
                     help="viewer: GET routes (lists, views, dashboard, metrics); operator: everything")
    lst = ops.add_parser("list", help="the tokens' names, roles and creation times (never their hashes)")
    rev = ops.add_parser("revoke", help="remove a token (running servers refuse it from their next request)")
    rev.add_argument("name")
    for s in (add, lst, rev):
        s.add_argument("--file", required=True, help="the tokens file (created by add when missing)")


def run(args: argparse.Namespace) -> int:
    """Carry out ``args.token_command``; raises :class:`~megflow_mp.errors.AuthError` on a user error."""
    if args.token_command == "add":
        token = add_token(args.file, args.name, args.role)
        print(f"token {args.name!r} ({args.role}) added to {args.file}; it is shown only now, keep it secret:")
        print(token)
    elif args.token_command == "list":
        tokens = read_tokens(args.file)
        if not tokens.entries:
            print(f"no token in {args.file}")
        for e in tokens.entries.values():
            print(f"{e.name}\t{e.role}\t{e.created}")
    else:
        revoke_token(args.file, args.name)
        print(f"token {args.name!r} revoked from {args.file}")
    return 0

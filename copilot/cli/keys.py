"""``copilot keys``: make a CURVE key pair for the daemon or for a client.

    copilot keys --name server --out /etc/copilot/keys           # the daemon's pair
    copilot keys --name titan-viewer --out ~/.config/copilot     # a client's pair; copy its .key (public) into the
                                                                 # daemon's allow-list folder (security.client_keys_dir)
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("keys", help="make a CURVE key pair (daemon or client) for sockets beyond loopback")
    p.add_argument("--name", required=True, help="server, or a name for the client (letters, digits, . _ -)")
    p.add_argument("--out", required=True, help="folder for <name>.key (public) and <name>.key_secret (secret)")
    p.set_defaults(func=run)


def run(args) -> int:
    from copilot.security import SecurityError, create_keypair

    try:
        public, secret = create_keypair(Path(args.out), args.name)
    except (SecurityError, OSError) as exc:
        print(f"copilot keys: {exc}", file=sys.stderr)
        return 2
    print(f"public key: {public}   (give it to the other side)")
    print(f"secret key: {secret}   (keep it here, readable by its owner only)")
    if args.name == "server":
        print("daemon config:  [security] server_secret_key = \"%s\"  client_keys_dir = \"<folder of client .key files>\""
              % secret)
    else:
        print(f"allow it on the daemon: copy {public} into the daemon's security.client_keys_dir")
    return 0

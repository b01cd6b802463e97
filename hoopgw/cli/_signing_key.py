"""``hoopgw signing-key``: the public half of the key that signs approval records (created if absent)."""

from __future__ import annotations

import argparse
import sys

from hoopgw.approvals import key_id, load_signing_key, public_key_b64, public_key_pem, signing_key_path
from hoopgw.cli._common import Subparsers, load, new_parser, print_json


def register(subparsers: Subparsers) -> None:
    """Add ``signing-key``."""
    parser = new_parser(
        subparsers,
        "signing-key",
        "print the gateway's public key for approval records (creates the key pair if there is none yet)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON array of one object (id = key id, status, pem, x)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the key id, the raw key (base64url) and the PEM block; the output is itself a valid PEM file."""
    config = load(args)
    data_dir = config.gateway.data_dir
    public = load_signing_key(data_dir).public_key()
    kid, pem, raw = key_id(public), public_key_pem(public), public_key_b64(public)
    if args.json:
        print_json(
            [
                {
                    "id": kid,
                    "status": "active",
                    "alg": "EdDSA",
                    "crv": "Ed25519",
                    "x": raw,
                    "pem": pem,
                    "file": str(signing_key_path(data_dir)),
                }
            ]
        )
        return 0
    sys.stdout.write(f"key id: {kid}\nalgorithm: Ed25519 (EdDSA)\npublic key (base64url): {raw}\n{pem}")
    return 0

"""The platform's Ed25519 token key pair for production runs: made once, kept, never committed.

    python -m aftercare.keys --private-dir var/prod/keys               # both files in one directory
    python -m aftercare.keys --private-dir /keys/private --public-dir /keys/public   # docker-compose

Writes ``jwt_private.pem`` (mode 0600; customer_svc alone signs tokens: ``CUSTOMER_JWT_PRIVATE_KEY``) and
``jwt_public.pem`` (every service verifies: ``AFTERCARE_JWT_PUBLIC_KEY``). Existing keys are kept; a missing
public key is derived from the private one. Both variables accept the PEM inline or the path of such a file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from shared.auth.tokens import generate_keypair

PRIVATE_NAME = "jwt_private.pem"
PUBLIC_NAME = "jwt_public.pem"


def ensure_keypair(private_dir: Path, public_dir: Path | None = None) -> tuple[Path, Path, bool]:
    """Returns (private path, public path, created)."""
    public_dir = public_dir or private_dir
    private_dir.mkdir(parents=True, exist_ok=True)
    public_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = private_dir / PRIVATE_NAME, public_dir / PUBLIC_NAME
    created = False
    if not private_path.exists():
        private, public = generate_keypair()
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private)
        public_path.write_text(public)
        created = True
    elif not public_path.exists():
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    public_path.chmod(0o644)
    return private_path, public_path, created


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aftercare.keys", description=__doc__.split("\n\n")[0])
    parser.add_argument("--private-dir", type=Path, required=True)
    parser.add_argument("--public-dir", type=Path, help="default: the private key's directory")
    args = parser.parse_args(argv)
    private, public, created = ensure_keypair(args.private_dir, args.public_dir)
    print(f"{'created' if created else 'kept'} key pair: private {private}, public {public}")


if __name__ == "__main__":
    main()

"""A local CA (trustme) and a server certificate in the data dir, so clients can verify HTTPS like Salesforce's."""
import json
import pathlib
import ssl

import trustme

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def ensure_certificates(data_dir: pathlib.Path, extra_names=()) -> tuple[pathlib.Path, pathlib.Path]:
    """(CA certificate path, server cert+key path); made at first start and reused while the host names match."""
    ca_path = data_dir / "ca.pem"
    server_path = data_dir / "server.pem"
    names_path = data_dir / "tls-names.json"
    names = sorted(set(DEFAULT_NAMES) | {n for n in extra_names if n and n != "0.0.0.0"})
    if ca_path.exists() and server_path.exists() and names_path.exists():
        if json.loads(names_path.read_text()) == names:
            return ca_path, server_path
    ca = trustme.CA(organization_name="ForceBridge emulator")
    cert = ca.issue_cert(*names)
    ca.cert_pem.write_to_path(str(ca_path))
    server_path.write_bytes(b"")
    server_path.chmod(0o600)
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_path))
    names_path.write_text(json.dumps(names))
    return ca_path, server_path


def server_context(server_path: pathlib.Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(server_path))
    return context

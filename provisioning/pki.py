"""Device PKI: platform root CA, per-organization intermediate CAs, client certificates.

Pure Python on top of ``cryptography`` (no Django imports) so it can be unit-tested
and reused by tooling outside the web process.

Trust model: platform root (EC P-384) -> one intermediate per organization
(EC P-256, pathlen 0) -> device client certificates issued from a PKCS#10 CSR.
The CSR only contributes its public key; identity comes from the platform.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

CAPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# Generous for any sane RSA-4096 CSR (~1.7 KB PEM); anything bigger is abuse.
MAX_CSR_BYTES = 16 * 1024
MIN_RSA_BITS = 2048
# Only the curves every TLS stack and MQTT broker supports; P-521 is rarely
# supported by constrained device TLS libraries, smaller curves are too weak.
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
ALLOWED_CSR_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
# Tolerate devices (and servers) whose clocks run slightly behind.
CLOCK_SKEW = timedelta(minutes=5)

_PEM_BEGIN = b"-----BEGIN CERTIFICATE REQUEST-----"
_PEM_END = b"-----END CERTIFICATE REQUEST-----"


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate together with its private key."""

    certificate: x509.Certificate
    private_key: CAPrivateKey

    def certificate_pem(self) -> str:
        """The CA certificate as PEM text."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def encrypted_key_pem(self, *, passphrase: bytes) -> bytes:
        """The private key as encrypted PKCS#8 PEM (for storage at rest)."""
        return encrypt_private_key(private_key=self.private_key, passphrase=passphrase)


class CSRRejected(ValueError):
    """The CSR is unacceptable; ``str(exc)`` is safe to return to the API client."""


# --- serialization ---------------------------------------------------------


def encrypt_private_key(*, private_key: CAPrivateKey, passphrase: bytes) -> bytes:
    """Serialize a private key as passphrase-encrypted PKCS#8 PEM."""
    if not passphrase:
        # An empty passphrase would silently mean "stored in clear".
        raise ValueError("passphrase must not be empty")
    return private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
    )


def load_private_key(*, pem: bytes, passphrase: bytes | None) -> CAPrivateKey:
    """Load a PEM private key; raises ValueError on a wrong passphrase."""
    key = serialization.load_pem_private_key(pem, password=passphrase)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError("CA private key must be EC or RSA")
    return key


def load_certificate(pem: str | bytes) -> x509.Certificate:
    """Load a single PEM certificate."""
    return x509.load_pem_x509_certificate(pem.encode("ascii") if isinstance(pem, str) else pem)


def ca_from_pem(
    *, certificate_pem: bytes, key_pem: bytes, passphrase: bytes | None
) -> CertificateAuthority:
    """Rebuild a CertificateAuthority from stored PEM, checking cert and key match."""
    certificate = load_certificate(certificate_pem)
    private_key = load_private_key(pem=key_pem, passphrase=passphrase)
    # A mismatched pair would issue certificates that never verify; fail loudly now.
    if certificate.public_key() != private_key.public_key():
        raise ValueError("CA certificate does not match the private key")
    return CertificateAuthority(certificate=certificate, private_key=private_key)


def fingerprint_sha256(*, certificate: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, lowercase hex without separators."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def serial_hex(*, certificate: x509.Certificate) -> str:
    """Serial number as lowercase hex, zero-padded to whole bytes (like OpenSSL)."""
    serial = certificate.serial_number
    return serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big").hex()


def crl_pem(crl: x509.CertificateRevocationList) -> str:
    """The CRL as PEM text."""
    return crl.public_bytes(serialization.Encoding.PEM).decode("ascii")


# --- helpers -------------------------------------------------------------------


def _utc_now(now: datetime | None) -> datetime:
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is None:
        # A naive datetime is ambiguous (local time? UTC?); refuse rather than guess.
        raise ValueError("now must be timezone-aware")
    # X.509 times have one-second resolution; truncating keeps validity spans exact.
    return now.astimezone(timezone.utc).replace(microsecond=0)


def _signing_hash(private_key: CAPrivateKey) -> hashes.HashAlgorithm:
    # Match hash strength to the key (P-384 -> SHA-384), as CA/B rules expect.
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and private_key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _authority_key_id(ca: CertificateAuthority) -> x509.AuthorityKeyIdentifier:
    # Reuse the issuer's SKI verbatim so AKI/SKI chaining matches byte for byte.
    try:
        ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True,
        crl_sign=True, encipher_only=False, decipher_only=False,
    )


def _check_public_key(public_key: object) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise CSRRejected(f"RSA key must be at least {MIN_RSA_BITS} bits")
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ALLOWED_CURVES):
            raise CSRRejected("EC curve must be P-256 or P-384")
    else:
        raise CSRRejected("public key must be RSA (>= 2048 bits) or EC (P-256 or P-384)")


# --- CA generation -------------------------------------------------------------


def generate_root_ca(*, common_name: str, valid_days: int = 3650) -> CertificateAuthority:
    """Create a self-signed EC P-384 root CA."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _utc_now(None)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _signing_hash(key))
    )
    return CertificateAuthority(certificate=cert, private_key=key)


def generate_intermediate_ca(
    *, parent: CertificateAuthority, common_name: str, organization: str, valid_days: int = 1825
) -> CertificateAuthority:
    """Create an EC P-256 intermediate CA (pathlen 0) signed by ``parent``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _utc_now(None)
    # Never outlive the parent: the tail end would be unusable anyway.
    not_after = min(now + timedelta(days=valid_days), parent.certificate.not_valid_after_utc)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        # pathlen 0: an organization's CA may issue devices, never further CAs.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(parent), critical=False)
        .sign(parent.private_key, _signing_hash(parent.private_key))
    )
    return CertificateAuthority(certificate=cert, private_key=key)


# --- CSR handling and issuance ---------------------------------------------------


def validate_csr(*, csr_pem: str | bytes) -> x509.CertificateSigningRequest:
    """Parse and vet a PEM PKCS#10 CSR; raise CSRRejected with the reason."""
    not_a_csr = CSRRejected("not a PEM-encoded PKCS#10 CSR")
    if isinstance(csr_pem, str):
        try:
            csr_pem = csr_pem.encode("ascii")  # PEM is ASCII by definition
        except UnicodeEncodeError:
            raise not_a_csr from None
    if not isinstance(csr_pem, bytes):
        raise not_a_csr
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CSRRejected(f"CSR exceeds {MAX_CSR_BYTES} bytes")
    data = csr_pem.strip()
    # Exactly one CSR block and nothing around it: the parser would otherwise
    # silently take the first block and ignore the rest.
    if not (data.startswith(_PEM_BEGIN) and data.endswith(_PEM_END)) or data.count(b"-----BEGIN") != 1:
        raise not_a_csr
    try:
        csr = x509.load_pem_x509_csr(data)
        public_key = csr.public_key()
    except Exception:  # malformed DER, unsupported key algorithms, ...
        raise not_a_csr from None

    _check_public_key(public_key)
    try:
        hash_algorithm = csr.signature_hash_algorithm
    except Exception:  # unknown signature algorithm OID
        hash_algorithm = None
    if not isinstance(hash_algorithm, ALLOWED_CSR_HASHES):
        raise CSRRejected("signature algorithm must be SHA-256 or stronger")
    # Proof of possession: the requester holds the private key for this public key.
    try:
        signature_ok = csr.is_signature_valid
    except Exception:
        signature_ok = False
    if not signature_ok:
        raise CSRRejected("CSR signature does not verify")
    return csr


def issue_client_certificate(
    *,
    ca: CertificateAuthority,
    csr: x509.CertificateSigningRequest,
    device_uuid: str,
    organization_id: str,
    valid_days: int = 365,
    now: datetime | None = None,
) -> x509.Certificate:
    """Issue a device client certificate for the CSR's public key.

    Everything else the CSR asks for (subject, SANs, extensions such as CA:TRUE)
    is deliberately ignored: identity and capabilities come from the platform.
    ``device_uuid`` is canonicalized (lowercase, hyphenated); ValueError if invalid.
    The expiry is clamped to the CA's own expiry.
    """
    device = str(uuid.UUID(device_uuid))
    if not organization_id:
        raise ValueError("organization_id must not be empty")
    public_key = csr.public_key()
    _check_public_key(public_key)  # defence in depth if validate_csr was skipped
    now = _utc_now(now)
    not_after = min(now + timedelta(days=valid_days), ca.certificate.not_valid_after_utc)
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, device),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization_id),
        ]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                # RSA key exchange (TLS 1.2 non-ECDHE) encrypts with the key itself.
                key_encipherment=is_rsa, data_encipherment=False, key_agreement=False,
                key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(ca), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:uuid:{device}")]),
            critical=False,
        )
        .sign(ca.private_key, _signing_hash(ca.private_key))
    )
    return cert


# --- revocation and verification -----------------------------------------------------


def build_crl(
    *,
    ca: CertificateAuthority,
    revoked: Iterable[tuple[int, datetime]],
    crl_number: int,
    now: datetime | None = None,
    next_update_s: int = 86400,
) -> x509.CertificateRevocationList:
    """Build a CRL signed by ``ca``; ``crl_number`` must increase with every CRL issued."""
    if crl_number < 0:
        raise ValueError("crl_number must be non-negative")
    now = _utc_now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(seconds=next_update_s))
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(_authority_key_id(ca), critical=False)
    )
    for serial, revoked_at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_utc_now(revoked_at))
            .build()
        )
    return builder.sign(ca.private_key, _signing_hash(ca.private_key))


def verify_chain(
    *,
    certificate: x509.Certificate,
    intermediate: x509.Certificate,
    root: x509.Certificate,
    now: datetime | None = None,
) -> None:
    """Verify a client certificate chains to ``root`` through ``intermediate``.

    Uses cryptography's RFC 5280 / Web PKI path validation (signatures, validity,
    CA constraints, key usage, EKU clientAuth). Raises VerificationError on failure.
    Revocation is not checked here.
    """
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(_utc_now(now))
        .build_client_verifier()
    )
    verified = verifier.verify(certificate, [intermediate])
    # Path building may find a shorter route (leaf signed directly by the root);
    # the caller asked about this particular intermediate, so insist on it.
    if verified.chain[1:] != [intermediate, root]:
        raise VerificationError("certificate was not issued by the given intermediate")


# --- development root persistence ------------------------------------------------------


def _write_atomic(path: pathlib.Path, data: bytes, mode: int) -> None:
    # Temp file in the same directory so os.replace is an atomic rename; the mode
    # is set before any secret bytes are written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def load_or_create_root(
    *, cert_path: pathlib.Path, key_path: pathlib.Path, passphrase: bytes, common_name: str
) -> CertificateAuthority:
    """Load the root CA from disk, or generate and store it on first run.

    Meant for development roots; not safe against two processes creating the
    root concurrently. If only one of the two files exists, refuse rather than
    overwrite what may be a real key.
    """
    cert_path, key_path = pathlib.Path(cert_path), pathlib.Path(key_path)
    if cert_path.exists() and key_path.exists():
        return ca_from_pem(
            certificate_pem=cert_path.read_bytes(),
            key_pem=key_path.read_bytes(),
            passphrase=passphrase,
        )
    if cert_path.exists() or key_path.exists():
        raise FileExistsError(
            f"only one of {cert_path} and {key_path} exists; refusing to overwrite it"
        )
    root = generate_root_ca(common_name=common_name)
    for path in (key_path, cert_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    # Key first: the certificate's presence marks a complete pair.
    _write_atomic(key_path, root.encrypted_key_pem(passphrase=passphrase), 0o600)
    _write_atomic(cert_path, root.certificate_pem().encode("ascii"), 0o644)
    return root

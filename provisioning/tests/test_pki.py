"""Unit tests for provisioning.pki (plain pytest, no Django, no mocks)."""

from __future__ import annotations

import stat
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import VerificationError

from provisioning import pki

# --- fixtures and helpers ------------------------------------------------------------


@pytest.fixture(scope="module")
def root() -> pki.CertificateAuthority:
    return pki.generate_root_ca(common_name="Test Platform Root CA")


@pytest.fixture(scope="module")
def intermediate(root) -> pki.CertificateAuthority:
    return pki.generate_intermediate_ca(parent=root, common_name="Org A Device CA", organization="org-a")


@pytest.fixture(scope="module")
def other_intermediate(root) -> pki.CertificateAuthority:
    return pki.generate_intermediate_ca(parent=root, common_name="Org B Device CA", organization="org-b")


def make_csr(key, *, hash_algorithm=hashes.SHA256(), common_name="device", extras=True):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if extras:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False
        ).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hash_algorithm)


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def der_to_pem(der: bytes) -> bytes:
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)


def _der_tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")  # DER long-form length
    return bytes([tag, 0x80 | len(size)]) + size + body


def sha1_signed_csr_pem() -> bytes:
    """An ECDSA-with-SHA1 CSR, assembled by hand.

    cryptography 50 refuses SHA-1 in CertificateSigningRequestBuilder.sign(), so we
    take a SHA-256 CSR's TBS part, sign it with ECDSA/SHA-1 and re-wrap it as
    CertificationRequest ::= SEQUENCE { info, AlgorithmIdentifier, BIT STRING }.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    tbs = make_csr(key).tbs_certrequest_bytes
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA1()))
    ecdsa_with_sha1 = _der_tlv(0x30, bytes.fromhex("06072a8648ce3d0401"))  # OID 1.2.840.10045.4.1
    der = _der_tlv(0x30, tbs + ecdsa_with_sha1 + _der_tlv(0x03, b"\x00" + signature))
    pem = der_to_pem(der)
    # Guard the helper itself: the CSR must really claim SHA-1.
    assert isinstance(x509.load_pem_x509_csr(pem).signature_hash_algorithm, hashes.SHA1)
    return pem


def issue(ca, *, key=None, now=None, valid_days=365, device_uuid=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = pki.validate_csr(csr_pem=csr_pem(make_csr(key, extras=False)))
    return pki.issue_client_certificate(
        ca=ca, csr=csr, device_uuid=device_uuid or str(uuid.uuid4()),
        organization_id="org-a", valid_days=valid_days, now=now,
    )


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


# --- CA generation -------------------------------------------------------------


def test_root_ca_is_self_signed_p384_ca(root):
    cert = root.certificate
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    assert isinstance(root.private_key.curve, ec.SECP384R1)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        root.private_key.public_key()
    )
    assert pki.generate_root_ca(common_name="x", valid_days=10).certificate.not_valid_after_utc < (
        datetime.now(timezone.utc) + timedelta(days=11)
    )


def test_intermediate_ca_is_pathlen0_p256_signed_by_root(root, intermediate):
    cert = intermediate.certificate
    cert.verify_directly_issued_by(root.certificate)
    assert cert.issuer == root.certificate.subject
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "org-a"
    assert isinstance(intermediate.private_key.curve, ec.SECP256R1)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    root_ski = ext(root.certificate, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == root_ski
    assert ext(cert, x509.SubjectKeyIdentifier).value.digest != root_ski
    with pytest.raises(Exception):
        cert.verify_directly_issued_by(cert)  # not self-signed


def test_intermediate_does_not_outlive_root(root):
    inter = pki.generate_intermediate_ca(parent=root, common_name="c", organization="o", valid_days=100_000)
    assert inter.certificate.not_valid_after_utc == root.certificate.not_valid_after_utc


# --- validate_csr ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), id="rsa2048"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="p256"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="p384"),
    ],
)
def test_validate_csr_accepts_strong_keys(make_key):
    key = make_key()
    pem = csr_pem(make_csr(key))
    for given in (pem, pem.decode("ascii"), b"\n  " + pem + b"\r\n"):
        csr = pki.validate_csr(csr_pem=given)
        assert csr.public_key() == key.public_key()


def test_validate_csr_accepts_sha512():
    key = ec.generate_private_key(ec.SECP384R1())
    csr = pki.validate_csr(csr_pem=csr_pem(make_csr(key, hash_algorithm=hashes.SHA512())))
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA512)


@pytest.mark.parametrize(
    ("make_key", "hash_algorithm", "message"),
    [
        pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
                     hashes.SHA256(), "RSA key must be at least 2048 bits", id="rsa1024"),
        # OpenSSL 4 here still generates P-192 keys, so no fallback curve is needed.
        pytest.param(lambda: ec.generate_private_key(ec.SECP192R1()),
                     hashes.SHA256(), "EC curve must be P-256 or P-384", id="p192"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()),
                     hashes.SHA256(), "EC curve must be P-256 or P-384", id="p521"),
        pytest.param(ed25519.Ed25519PrivateKey.generate, None,
                     "public key must be RSA (>= 2048 bits) or EC (P-256 or P-384)", id="ed25519"),
        pytest.param(lambda: dsa.generate_private_key(key_size=2048), hashes.SHA256(),
                     "public key must be RSA (>= 2048 bits) or EC (P-256 or P-384)", id="dsa"),
    ],
)
def test_validate_csr_rejects_weak_or_unsupported_keys(make_key, hash_algorithm, message):
    pem = csr_pem(make_csr(make_key(), hash_algorithm=hash_algorithm))
    with pytest.raises(pki.CSRRejected) as exc_info:
        pki.validate_csr(csr_pem=pem)
    assert str(exc_info.value) == message


def test_validate_csr_rejects_sha1_signature():
    with pytest.raises(pki.CSRRejected) as exc_info:
        pki.validate_csr(csr_pem=sha1_signed_csr_pem())
    assert str(exc_info.value) == "signature algorithm must be SHA-256 or stronger"


def test_validate_csr_rejects_tampered_signature():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = bytearray(make_csr(key).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the DER ends with the signature BIT STRING's last byte
    with pytest.raises(pki.CSRRejected) as exc_info:
        pki.validate_csr(csr_pem=der_to_pem(bytes(der)))
    assert str(exc_info.value) == "CSR signature does not verify"


def test_validate_csr_rejects_csr_with_altered_subject():
    # Changing the signed content (not the signature) must also be caught.
    key = ec.generate_private_key(ec.SECP256R1())
    der = make_csr(key, common_name="aaaa", extras=False).public_bytes(serialization.Encoding.DER)
    tampered = der.replace(b"aaaa", b"bbbb")
    assert tampered != der
    with pytest.raises(pki.CSRRejected, match="^CSR signature does not verify$"):
        pki.validate_csr(csr_pem=der_to_pem(tampered))


def test_validate_csr_rejects_things_that_are_not_a_csr(intermediate):
    valid = csr_pem(make_csr(ec.generate_private_key(ec.SECP256R1())))
    not_csrs = [
        "hello, I am a certificate request",
        "",
        b"   \n",
        "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGRlcg==\n-----END CERTIFICATE REQUEST-----\n",
        intermediate.certificate_pem(),
        valid + valid,  # two blocks
        b"subject=CN=device\n" + valid,  # text around the block
        valid.decode("ascii") + "\u00e9",  # non-ASCII
        valid.replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"),  # legacy header
        None,
        12345,
    ]
    for given in not_csrs:
        with pytest.raises(pki.CSRRejected) as exc_info:
            pki.validate_csr(csr_pem=given)
        assert str(exc_info.value) == "not a PEM-encoded PKCS#10 CSR", given


def test_validate_csr_rejects_oversize_input():
    valid = csr_pem(make_csr(ec.generate_private_key(ec.SECP256R1())))
    pki.validate_csr(csr_pem=valid + b"\n" * (pki.MAX_CSR_BYTES - len(valid)))  # exactly at the limit
    # Padding with whitespace would otherwise be accepted (it is stripped), so
    # only the size limit can reject this one.
    with pytest.raises(pki.CSRRejected) as exc_info:
        pki.validate_csr(csr_pem=valid + b"\n" * (pki.MAX_CSR_BYTES - len(valid) + 1))
    assert str(exc_info.value) == f"CSR exceeds {pki.MAX_CSR_BYTES} bytes"


# --- issue_client_certificate ------------------------------------------------------


def test_issued_certificate_ignores_everything_in_the_csr_but_the_key(root, intermediate):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = pki.validate_csr(csr_pem=csr_pem(make_csr(key, common_name="evil")))
    device_uuid = str(uuid.uuid4())
    now = datetime.now(timezone.utc).replace(microsecond=0)
    cert = pki.issue_client_certificate(
        ca=intermediate, csr=csr, device_uuid=device_uuid, organization_id="org-a", valid_days=90, now=now
    )

    assert cert.subject == x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, device_uuid),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "org-a"),
    ])
    assert cert.issuer == intermediate.certificate.subject
    assert cert.public_key() == key.public_key()

    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not (ku.value.key_encipherment or ku.value.key_cert_sign or ku.value.crl_sign)
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert list(ext(cert, x509.SubjectAlternativeName).value) == [
        x509.UniformResourceIdentifier(f"urn:uuid:{device_uuid}")
    ]
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert (
        ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(intermediate.certificate, x509.SubjectKeyIdentifier).value.digest
    )
    assert {e.oid for e in cert.extensions} == {
        x509.BasicConstraints.oid, x509.KeyUsage.oid, x509.ExtendedKeyUsage.oid,
        x509.SubjectKeyIdentifier.oid, x509.AuthorityKeyIdentifier.oid, x509.SubjectAlternativeName.oid,
    }

    assert cert.not_valid_before_utc == now - timedelta(minutes=5)
    assert cert.not_valid_after_utc == now + timedelta(days=90)
    assert 0 < cert.serial_number < 2**159
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)

    pki.verify_chain(certificate=cert, intermediate=intermediate.certificate, root=root.certificate)


def test_rsa_client_certificate_gets_key_encipherment(root, intermediate):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue(intermediate, key=key)
    ku = ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    pki.verify_chain(certificate=cert, intermediate=intermediate.certificate, root=root.certificate)


def test_device_uuid_is_validated_and_canonicalized(intermediate):
    raw = uuid.uuid4()
    cert = issue(intermediate, device_uuid=str(raw).upper())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == str(raw)
    with pytest.raises(ValueError):
        issue(intermediate, device_uuid="not-a-uuid")


def test_issue_refuses_weak_key_even_without_validate_csr(intermediate):
    csr = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024), extras=False)
    with pytest.raises(pki.CSRRejected, match="at least 2048"):
        pki.issue_client_certificate(
            ca=intermediate, csr=csr, device_uuid=str(uuid.uuid4()), organization_id="o"
        )


def test_issue_requires_timezone_aware_now(intermediate):
    with pytest.raises(ValueError, match="timezone-aware"):
        issue(intermediate, now=datetime(2030, 1, 1))


def test_serials_are_random(intermediate):
    assert issue(intermediate).serial_number != issue(intermediate).serial_number


def test_certificate_from_other_org_does_not_verify(root, intermediate, other_intermediate):
    cert = issue(other_intermediate)
    pki.verify_chain(certificate=cert, intermediate=other_intermediate.certificate, root=root.certificate)
    with pytest.raises(VerificationError):
        pki.verify_chain(certificate=cert, intermediate=intermediate.certificate, root=root.certificate)


def test_certificate_from_other_root_does_not_verify(intermediate):
    other_root = pki.generate_root_ca(common_name="Test Platform Root CA")  # same name, other key
    cert = issue(intermediate)
    with pytest.raises(VerificationError):
        pki.verify_chain(certificate=cert, intermediate=intermediate.certificate, root=other_root.certificate)


def test_verify_chain_insists_on_the_given_intermediate(root, intermediate):
    cert = issue(root)  # signed directly by the root, bypassing the org CA
    with pytest.raises(VerificationError, match="given intermediate"):
        pki.verify_chain(certificate=cert, intermediate=intermediate.certificate, root=root.certificate)


def test_verify_chain_checks_validity_period(root, intermediate):
    now = datetime.now(timezone.utc)
    cert = issue(intermediate, now=now, valid_days=1)
    pki.verify_chain(certificate=cert, intermediate=intermediate.certificate, root=root.certificate,
                     now=now + timedelta(hours=23))
    with pytest.raises(VerificationError):
        pki.verify_chain(certificate=cert, intermediate=intermediate.certificate, root=root.certificate,
                         now=now + timedelta(days=1, seconds=1))


def test_fingerprint_and_serial_hex(intermediate):
    cert = issue(intermediate)
    fp = pki.fingerprint_sha256(certificate=cert)
    assert fp == cert.fingerprint(hashes.SHA256()).hex() and len(fp) == 64 and fp == fp.lower()
    sh = pki.serial_hex(certificate=cert)
    assert int(sh, 16) == cert.serial_number and len(sh) % 2 == 0 and sh == sh.lower()


# --- CRL -----------------------------------------------------------------------------


def test_build_crl_lists_revoked_serials_and_is_signed(intermediate, other_intermediate):
    revoked_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    revoked_serials = [issue(intermediate).serial_number, issue(intermediate).serial_number]
    kept = issue(intermediate).serial_number
    now = datetime.now(timezone.utc).replace(microsecond=0)
    crl = pki.build_crl(
        ca=intermediate, revoked=[(s, revoked_at) for s in revoked_serials], crl_number=7, now=now,
    )

    assert sorted(r.serial_number for r in crl) == sorted(revoked_serials)
    entry = crl.get_revoked_certificate_by_serial_number(revoked_serials[0])
    assert entry is not None and entry.revocation_date_utc == revoked_at
    assert crl.get_revoked_certificate_by_serial_number(kept) is None
    assert crl.issuer == intermediate.certificate.subject
    assert crl.is_signature_valid(intermediate.certificate.public_key())
    assert not crl.is_signature_valid(other_intermediate.certificate.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert (
        crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(intermediate.certificate, x509.SubjectKeyIdentifier).value.digest
    )
    assert crl.last_update_utc == now and crl.next_update_utc == now + timedelta(days=1)

    pem = pki.crl_pem(crl)
    assert pem.startswith("-----BEGIN X509 CRL-----")
    assert x509.load_pem_x509_crl(pem.encode()).fingerprint(hashes.SHA256()) == crl.fingerprint(hashes.SHA256())


def test_empty_crl(intermediate):
    crl = pki.build_crl(ca=intermediate, revoked=[], crl_number=0, next_update_s=60)
    assert len(crl) == 0
    assert crl.next_update_utc - crl.last_update_utc == timedelta(seconds=60)


# --- key and CA serialization ------------------------------------------------------------


def test_private_key_round_trip_is_encrypted(intermediate):
    pem = pki.encrypt_private_key(private_key=intermediate.private_key, passphrase=b"correct horse")
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in pem
    assert b"BEGIN PRIVATE KEY" not in pem
    loaded = pki.load_private_key(pem=pem, passphrase=b"correct horse")
    assert loaded.public_key() == intermediate.private_key.public_key()
    with pytest.raises(ValueError):
        pki.load_private_key(pem=pem, passphrase=b"wrong horse")
    with pytest.raises(ValueError):
        pki.encrypt_private_key(private_key=intermediate.private_key, passphrase=b"")


def test_ca_from_pem_round_trip_and_mismatch(root, intermediate):
    key_pem = intermediate.encrypted_key_pem(passphrase=b"pw")
    ca = pki.ca_from_pem(
        certificate_pem=intermediate.certificate_pem().encode(), key_pem=key_pem, passphrase=b"pw"
    )
    assert ca.certificate == intermediate.certificate
    assert pki.load_certificate(intermediate.certificate_pem()) == intermediate.certificate
    with pytest.raises(ValueError, match="does not match"):
        pki.ca_from_pem(
            certificate_pem=root.certificate_pem().encode(), key_pem=key_pem, passphrase=b"pw"
        )


def test_load_or_create_root(tmp_path):
    cert_path = tmp_path / "var" / "pki" / "root.pem"
    key_path = tmp_path / "var" / "pki" / "private" / "root.key"
    first = pki.load_or_create_root(
        cert_path=cert_path, key_path=key_path, passphrase=b"dev", common_name="Dev Root"
    )

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in key_path.read_bytes()
    assert pki.load_certificate(cert_path.read_bytes()) == first.certificate
    # Atomic writes leave no temp files behind.
    assert sorted(p.name for p in cert_path.parent.iterdir()) == ["private", "root.pem"]
    assert [p.name for p in key_path.parent.iterdir()] == ["root.key"]

    second = pki.load_or_create_root(
        cert_path=cert_path, key_path=key_path, passphrase=b"dev", common_name="Other"
    )
    assert second.certificate.serial_number == first.certificate.serial_number
    assert second.private_key.public_key() == first.private_key.public_key()

    with pytest.raises(ValueError):
        pki.load_or_create_root(
            cert_path=cert_path, key_path=key_path, passphrase=b"nope", common_name="Dev Root"
        )


def test_load_or_create_root_refuses_half_present_pair(tmp_path):
    key_path = tmp_path / "root.key"
    key_path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        pki.load_or_create_root(
            cert_path=tmp_path / "root.pem", key_path=key_path, passphrase=b"dev", common_name="x"
        )
    assert key_path.read_bytes() == b"precious"

"""Certificates for the TLS tests, made fresh in a folder: a CA, a server
certificate for 127.0.0.1 and localhost, an expired one, one for another
host, a client certificate, and a second CA that signed none of them.
Python's cryptography (Debian's python3-cryptography) makes them."""
import datetime
import ipaddress
import os
import sys

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError as e:    # scripts/setup installs it; say so rather than fail obscurely
    print(f"SKIPPED: missing Python module: {e}")
    sys.exit(77)


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path, key, cert):
    with open(path + ".key", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(path + ".pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return path + ".pem", path + ".key"


class Certs:
    """Files under folder: ca, other_ca, server, expired, wrong_host and
    client, each a (pem, key) pair; ca and other_ca also as .pem alone."""

    def __init__(self, folder):
        self.folder = folder
        now = datetime.datetime.now(datetime.timezone.utc)
        day = datetime.timedelta(days=1)
        self.ca, ca_key, ca_cert = self._ca("gpuq test CA", now, day)
        self.other_ca, _, _ = self._ca("gpuq other CA", now, day)
        local = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        # one certificate serves both ends of cluster and replication links
        both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        self.server = self._leaf("server", "localhost", local, both, now - day, now + 30 * day,
                                 ca_key, ca_cert)
        self.expired = self._leaf("expired", "localhost", local, both, now - 30 * day, now - day,
                                  ca_key, ca_cert)
        self.wrong_host = self._leaf("wrong_host", "redis.example.com",
                                     [x509.DNSName("redis.example.com"),
                                      x509.IPAddress(ipaddress.ip_address("192.0.2.7"))],
                                     both, now - day, now + 30 * day, ca_key, ca_cert)
        self.client = self._leaf("client", "gpuq worker", [x509.DNSName("gpuq-worker")],
                                 [ExtendedKeyUsageOID.CLIENT_AUTH], now - day, now + 30 * day,
                                 ca_key, ca_cert)

    def _ca(self, cn, now, day):
        key = _key()
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - day).not_valid_after(now + 365 * day)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        pem, _ = _write(os.path.join(self.folder, cn.split()[1] + "_ca"), key, cert)
        return pem, key, cert

    def _leaf(self, name, cn, sans, usages, not_before, not_after, ca_key, ca_cert):
        key = _key()
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return _write(os.path.join(self.folder, name), key, cert)

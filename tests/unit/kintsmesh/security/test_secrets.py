import stat
import threading

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kintsmesh.security.pki import certificate_authority, server_certificate
from kintsmesh.security.secrets import secret
from kintsmesh.settings import Settings


def test_secrets_are_generated_once_per_installation_private_to_their_owner(tmp_path):
    folder = tmp_path / "secrets"
    first = secret(folder, "postgres-api")
    assert secret(folder, "postgres-api") == first and len(first) >= 32
    assert secret(tmp_path / "other", "postgres-api") != first
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "postgres-api").stat().st_mode) == 0o600


def test_processes_asking_at_once_agree_on_one_value(tmp_path):
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(secret(tmp_path, "shared"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1


def test_a_simulated_citys_folder_keeps_the_installations_secrets(tmp_path):
    settings = Settings(stack_dir=tmp_path / "stack")
    city = settings.model_copy(update={"stack_dir": tmp_path / "city"})
    assert city.secrets_dir == settings.secrets_dir == tmp_path / "stack" / "secrets"


def test_no_default_password_anywhere_each_role_its_own(tmp_path):
    settings = Settings(stack_dir=tmp_path)
    passwords = {role: settings.role_password(role) for role in ("admin", "merge", "api", "capture_police")}
    assert len(set(passwords.values())) == len(passwords) and "kintsmesh" not in passwords.values()
    dsn = settings.dsn("resource_library", role="api")
    assert "user=kintsmesh_api" in dsn and "sslmode=verify-full" in dsn and f"sslrootcert={tmp_path}" in dsn


def test_a_password_with_libpq_syntax_cannot_redirect_the_connection(tmp_path):
    from pydantic import SecretStr
    from psycopg.conninfo import conninfo_to_dict

    settings = Settings(stack_dir=tmp_path, pg_password=SecretStr("x host=evil.example port=1 dbname=other"))
    parsed = conninfo_to_dict(settings.dsn("police", role="admin"))
    assert parsed["host"] == "127.0.0.1" and parsed["dbname"] == "police"
    assert parsed["password"] == "x host=evil.example port=1 dbname=other"


def test_server_certificates_chain_to_the_local_ca_and_name_the_host(tmp_path):
    ca = x509.load_pem_x509_certificate(certificate_authority(tmp_path).cert.read_bytes())
    pair = server_certificate(tmp_path, "postgres")
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
    assert server_certificate(tmp_path, "postgres").cert.read_bytes() == pair.cert.read_bytes()   # made once

//! End-to-end tests of the provider: files on disk (made with rcgen in a
//! tempdir), real rustls handshakes over in-memory duplex pipes.

use super::*;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio_rustls::{TlsConnector, client, server};

/// A test-only RSA key (PKCS#8), so PKCS#1 loading can be tested: ring
/// cannot generate RSA keys.
const RSA_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCl6TwRjrZhL9+S
FK1Q/LQDg8oasne4FWWfRICxgypjXLzUm1E0JoblgUoPEyxnqchG2TWd6kIh/DQt
evYmZZIZxZZZpO5oy+Ni7ccQ1VPtAQd8h2hFmhEtykFsGd6p8J5xhP7Cl2DZmcSQ
NHMQXAKjYYI8E8Srz8R1wdU5Zr6mYsCdcj/xVemfNqpS5B30FCF0tP5vxBm2852a
2oaTtznbYWysIG92SP+s8RXPBaX6PIbl0jE9BtxHqq3XEaw7arU/cRPOW2TsXGCP
VYDQl6k/BIJIe4pJbqCN+yKs+EqNJrQKLaWK4LAv7CBP/8DFAxnLzkv0eg9dvtgm
jP2C39hZAgMBAAECggEAR+HqEydUcH4n7OhFgUnDiqROa8u4IAsxONSat44/TsaO
z8StZZ1to8Ek/6wMeKtwaPXSC6XD2mqlhrD4NgGaz8yyTAuv+bqgvauMrIfo8U4Z
WsRmEoXifIbdWoNI3DMyyrdXE6M3pH/BUMNQuR1MTVJBdVsRQmll0qlVAyY3YunB
R/QMgWWu0RZDK1P7q58OU5T77gZhg8McEVrvcWQmt2K717HCAGOVhS5Qm3SSshte
Rh7Hmb7Zo26RvnJG9wIAnsC8F7EogrkS0MK9SbexZ1s5L/PEYKWEFsv6COiT+YPW
HiKzY6dDlSQKV6EL9T3qMuy1JCSJshFoFaFj3U/Y2wKBgQDqB2UrdAwcXzmsYE5k
sVtI8d53OV8JULKN54vMLn5WIKZU9NFJJUQDv7UrsgdTai6hCgZ002T17JNw/OSp
9yMcawRHzpaWnyWnPB3nE+VX7Jx80//c3wAQmNYkqROkauxV5uf0E1gBMVI5bIKC
KoZf57+ez19QBtEOY560s1dh0wKBgQC1fLWJZMbtEHuuHJH5HUOEyfFsGza46uOw
vvp+uca+YYmkrLlDpMaYaX3gUKup/NNAQFuhk6fYyNIRERUAIJ0ELdF5ObTtWmvT
qpNZhbDuwYHcO6lH8FhQS0Nb7NWLQtzM3If6NmSmUVIANUOJtjUgoK/4Dee2+x6n
Df8wa8jVowKBgQCKKdGFpN5dha6D4NuHQNnWp8yh8IH1+ulfM5rp8WzuphnswBgq
qdCMsgpggJsomOBsfIGxSPgq4/9rzjGlUl0tMtT1G7b1t4FASRKSUMGudecxHuvI
VvMv2Ttbq2IISIO8dzTreNwU4Cxd8HzgIgDw793GAUGQ+mVDrHaO0e49twKBgFin
eM6K6hm36ZLd5fi48NiXBVX33T1rkJowUJFDEvDBGMnWjhGbFmAxeAnxnknFdTR3
u8ssI9vkDanEnGuZgtodv6vmIpmnh/C37I7Yndujr1nz0vePUrS2b0siYBZNLSrt
t4bktzn/k30Ch+FnnoA3vn3/3OcnuIuGbNgsbsjdAoGBAI/0985fOcZ7lDg/bADX
GnKfb1rad3vucwT5w+/sbQboID62G4IMS8DEvHwQEi90AmizFI3qeb6brllzD6eQ
IyQJqFH1p3633G+BLeDpTc+k7lMRNMn5QvB6bTBDpBnucu5A0asR5yH+Ti4RAT74
H7zi0jP7lU5qPcdWQfahX4vM
-----END PRIVATE KEY-----
";

/// A throwaway CA that signs leaf certificates.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn test_ca() -> TestCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Postamt Test CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCa {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf for `names` (the first is the CN) signed by `ca`, with `key`.
fn leaf_pem(ca: &TestCa, names: &[&str], key: &KeyPair) -> String {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0]);
    params.distinguished_name = dn;
    params.signed_by(key, &ca.issuer).unwrap().pem()
}

/// Writes `<stem>-cert.pem` (leaf + CA chain) and `<stem>-key.pem`; returns
/// their paths and the leaf's fingerprint.
fn write_pair(dir: &Path, stem: &str, ca: &TestCa, names: &[&str]) -> (PathBuf, PathBuf, String) {
    let key = KeyPair::generate().unwrap();
    let leaf = leaf_pem(ca, names, &key);
    let cert_path = dir.join(format!("{stem}-cert.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    replace_file(&cert_path, format!("{leaf}{}", ca.pem).as_bytes());
    replace_file(&key_path, key.serialize_pem().as_bytes());
    (cert_path, key_path, pem_fingerprint(&leaf))
}

/// Replaces a file the way deployment tools do: write aside, then rename.
fn replace_file(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn pem_fingerprint(pem: &str) -> String {
    let chain = pem::parse_chain(pem.as_bytes(), Path::new("x")).unwrap();
    fingerprint_sha256(chain[0].as_ref())
}

fn config_with(dir: &Path, cert: &Path, key: &Path) -> postamt_config::Config {
    let mut c = postamt_config::Config {
        hostname: "mx.example.org".into(),
        data_dir: dir.join("data"),
        ..Default::default()
    };
    c.tls.cert = Some(cert.to_path_buf());
    c.tls.key = Some(key.to_path_buf());
    c
}

fn client_with_versions(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(
        ca_pem.as_bytes(),
    ) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

type Pair = (
    client::TlsStream<DuplexStream>,
    server::TlsStream<DuplexStream>,
);

/// A full handshake between `acceptor` and a client of `config` asking
/// for `host` (a DNS name sends SNI; an IP address does not).
async fn handshake(
    acceptor: TlsAcceptor,
    config: Arc<ClientConfig>,
    host: &str,
) -> Result<Pair, String> {
    let (c, s) = duplex(64 * 1024);
    let server = tokio::spawn(async move { acceptor.accept(s).await });
    let name: ServerName<'static> = testing::server_name(host);
    let client = TlsConnector::from(config)
        .connect(name, c)
        .await
        .map_err(|e| format!("client: {e}"))?;
    let server = server
        .await
        .map_err(|e| format!("join: {e}"))?
        .map_err(|e| format!("server: {e}"))?;
    Ok((client, server))
}

fn peer_fingerprint(c: &client::TlsStream<DuplexStream>) -> String {
    let certs = c
        .get_ref()
        .1
        .peer_certificates()
        .expect("server sent a chain");
    fingerprint_sha256(certs[0].as_ref())
}

/// Application data flows both ways over the session.
async fn exchange(pair: &mut Pair, msg: &[u8]) {
    let (client, server) = pair;
    client.write_all(msg).await.unwrap();
    client.flush().await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, msg);
    server.write_all(&buf).await.unwrap();
    server.flush().await.unwrap();
    let mut back = vec![0u8; msg.len()];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

/// The inner key of a PKCS#8 `PrivateKeyInfo` (an RSAPrivateKey or
/// ECPrivateKey), to produce PKCS#1 and SEC1 files.
fn pkcs8_inner_key(der: &[u8]) -> &[u8] {
    use x509_parser::asn1_rs::{Any, FromDer, Sequence};
    let (_, key) = Sequence::from_der_and_then(der, |body| {
        let (body, _version) = u32::from_der(body)?;
        let (body, _algorithm) = Any::from_der(body)?;
        <&[u8]>::from_der(body)
    })
    .expect("a PKCS#8 private key");
    key
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

#[tokio::test]
async fn loads_chain_and_key_from_files_and_serves_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (cert, key, fp) = write_pair(dir.path(), "mx", &ca, &["mx.example.org"]);
    let provider = TlsProvider::from_config(&config_with(dir.path(), &cert, &key)).unwrap();

    let infos = provider.certificate_info();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].sni_hostname, None);
    assert_eq!(infos[0].subject, "CN=mx.example.org");
    assert_eq!(infos[0].issuer, "CN=Postamt Test CA");
    assert!(!infos[0].self_signed);
    assert_eq!(infos[0].fingerprint_sha256, fp);
    assert_eq!(infos[0].cert_file.as_deref(), Some(cert.as_path()));
    assert!(infos[0].not_after > info::now_unix());

    let mut pair = handshake(
        provider.acceptor(),
        testing::client_config_trusting(&ca.pem),
        "mx.example.org",
    )
    .await
    .unwrap();
    assert_eq!(peer_fingerprint(&pair.0), fp);
    // The intermediate (here the CA) is sent along with the leaf.
    assert_eq!(pair.0.get_ref().1.peer_certificates().unwrap().len(), 2);
    exchange(&mut pair, b"EHLO client\r\n").await;
    // No ALPN unless asked for.
    assert_eq!(pair.1.get_ref().1.alpn_protocol(), None);
}

#[tokio::test]
async fn relative_paths_are_read_from_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (_, _, fp) = write_pair(dir.path(), "mx", &ca, &["mx.example.org"]);
    let mut config = config_with(
        dir.path(),
        Path::new("mx-cert.pem"),
        Path::new("mx-key.pem"),
    );
    config.source = Some(dir.path().join("postamt.toml"));
    let provider = TlsProvider::from_config(&config).unwrap();
    assert_eq!(provider.certificate_info()[0].fingerprint_sha256, fp);
}

#[test]
fn wrong_key_is_an_error_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (cert, _, _) = write_pair(dir.path(), "a", &ca, &["mx.example.org"]);
    let (_, other_key, _) = write_pair(dir.path(), "b", &ca, &["mx.example.org"]);
    let e = TlsProvider::from_config(&config_with(dir.path(), &cert, &other_key)).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("a-cert.pem") && text.contains("b-key.pem"),
        "{text}"
    );
}

#[test]
fn garbage_and_missing_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (cert, key, _) = write_pair(dir.path(), "a", &ca, &["mx.example.org"]);

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, b"this is not a certificate\n").unwrap();
    let e = TlsProvider::from_config(&config_with(dir.path(), &garbage, &key)).unwrap_err();
    assert!(matches!(e, TlsError::NotPem { .. }), "{e}");
    assert!(e.to_string().contains("garbage.pem"), "{e}");

    let e = TlsProvider::from_config(&config_with(dir.path(), &cert, &garbage)).unwrap_err();
    assert!(matches!(e, TlsError::NotPem { .. }), "{e}");

    // A key file given as the certificate: PEM, but no certificate in it.
    let e = TlsProvider::from_config(&config_with(dir.path(), &key, &key)).unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    assert!(e.to_string().contains("a-key.pem"), "{e}");

    let missing = dir.path().join("missing.pem");
    let e = TlsProvider::from_config(&config_with(dir.path(), &cert, &missing)).unwrap_err();
    assert!(matches!(e, TlsError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    // cert without key.
    let mut config = config_with(dir.path(), &cert, &key);
    config.tls.key = None;
    let e = TlsProvider::from_config(&config).unwrap_err();
    assert!(matches!(e, TlsError::Config(_)), "{e}");
}

#[test]
fn combined_cert_and_key_file_works() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (cert, key, fp) = write_pair(dir.path(), "a", &ca, &["mx.example.org"]);
    let both = dir.path().join("both.pem");
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&key).unwrap(),
        std::fs::read_to_string(&cert).unwrap()
    );
    std::fs::write(&both, text).unwrap();
    let provider = TlsProvider::from_config(&config_with(dir.path(), &both, &both)).unwrap();
    assert_eq!(provider.certificate_info()[0].fingerprint_sha256, fp);
}

#[tokio::test]
async fn sec1_and_pkcs1_keys_load_and_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();

    // SEC1 (`EC PRIVATE KEY`), taken out of a PKCS#8 P-256 key.
    let ec = KeyPair::generate().unwrap();
    let ec_cert = leaf_pem(&ca, &["ec.example.org"], &ec);
    let pkcs8 = ec.serialize_der();
    let sec1 = pkcs8_inner_key(&pkcs8);
    let ec_cert_path = dir.path().join("ec-cert.pem");
    let ec_key_path = dir.path().join("ec-key.pem");
    std::fs::write(&ec_cert_path, &ec_cert).unwrap();
    std::fs::write(&ec_key_path, pem_block("EC PRIVATE KEY", sec1)).unwrap();

    // PKCS#1 (`RSA PRIVATE KEY`), from the RSA fixture.
    let rsa = KeyPair::from_pem(RSA_PKCS8_PEM).unwrap();
    let rsa_cert = leaf_pem(&ca, &["rsa.example.org"], &rsa);
    let rsa_der = rsa.serialize_der();
    let pkcs1 = pkcs8_inner_key(&rsa_der);
    let rsa_cert_path = dir.path().join("rsa-cert.pem");
    let rsa_key_path = dir.path().join("rsa-key.pem");
    std::fs::write(&rsa_cert_path, &rsa_cert).unwrap();
    std::fs::write(&rsa_key_path, pem_block("RSA PRIVATE KEY", pkcs1)).unwrap();

    for (cert, key, host, cert_pem) in [
        (&ec_cert_path, &ec_key_path, "ec.example.org", &ec_cert),
        (&rsa_cert_path, &rsa_key_path, "rsa.example.org", &rsa_cert),
    ] {
        let provider = TlsProvider::from_config(&config_with(dir.path(), cert, key)).unwrap();
        for versions in [
            &[&rustls::version::TLS13][..],
            &[&rustls::version::TLS12][..],
        ] {
            let pair = handshake(
                provider.acceptor(),
                client_with_versions(&ca.pem, versions, &[]),
                host,
            )
            .await
            .unwrap();
            assert_eq!(peer_fingerprint(&pair.0), pem_fingerprint(cert_pem));
        }
    }

    // The RSA key with the EC certificate is refused.
    let e = TlsProvider::from_config(&config_with(dir.path(), &ec_cert_path, &rsa_key_path))
        .unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
}

#[tokio::test]
async fn self_signed_is_generated_persisted_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let config = postamt_config::Config {
        hostname: "mx.example.org".into(),
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let first = TlsProvider::from_config(&config).unwrap();
    let info = first.certificate_info();
    assert_eq!(info.len(), 1);
    assert!(info[0].self_signed);
    assert!(
        info[0].subject.starts_with("CN=mx.example.org,"),
        "{}",
        info[0].subject
    );

    let tls_dir = dir.path().join("data").join("tls");
    let cert_path = tls_dir.join(SELF_SIGNED_CERT_FILE);
    let key_path = tls_dir.join(SELF_SIGNED_KEY_FILE);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        first.watched_files(),
        vec![cert_path.clone(), key_path.clone()]
    );

    let second = TlsProvider::from_config(&config).unwrap();
    assert_eq!(
        second.certificate_info()[0].fingerprint_sha256,
        info[0].fingerprint_sha256
    );

    // A client trusting the persisted PEM accepts it by host name,
    // localhost, and loopback address (no SNI).
    let pem = std::fs::read_to_string(&cert_path).unwrap();
    for host in ["mx.example.org", "localhost", "127.0.0.1", "::1"] {
        let pair = handshake(
            second.acceptor(),
            testing::client_config_trusting(&pem),
            host,
        )
        .await
        .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(peer_fingerprint(&pair.0), info[0].fingerprint_sha256);
    }
    // But not for a name it was not made for.
    assert!(
        handshake(
            second.acceptor(),
            testing::client_config_trusting(&pem),
            "other.example.org"
        )
        .await
        .is_err()
    );

    // Deleted: made anew at the next reload.
    std::fs::remove_file(&cert_path).unwrap();
    match second.reload().unwrap() {
        ReloadOutcome::Reloaded { certificates } => {
            assert_ne!(
                certificates[0].fingerprint_sha256,
                info[0].fingerprint_sha256
            )
        }
        other => panic!("expected a new certificate, got {other:?}"),
    }
    assert!(cert_path.exists());
}

#[tokio::test]
async fn sni_picks_the_certificate_by_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (cert, key, default_fp) = write_pair(
        dir.path(),
        "default",
        &ca,
        &["mx.example.org", "unknown.example.com", "127.0.0.1"],
    );
    let (net_cert, net_key, net_fp) = write_pair(dir.path(), "net", &ca, &["mail.example.net"]);
    let (com_cert, com_key, com_fp) = write_pair(dir.path(), "com", &ca, &["imap.example.com"]);
    let mut config = config_with(dir.path(), &cert, &key);
    config.tls.sni = vec![
        postamt_config::SniCertificate {
            hostname: "Mail.Example.NET".into(),
            cert: net_cert,
            key: net_key,
        },
        postamt_config::SniCertificate {
            hostname: "imap.example.com".into(),
            cert: com_cert,
            key: com_key,
        },
    ];
    let provider = TlsProvider::from_config(&config).unwrap();
    for (host, want) in [
        ("mail.example.net", &net_fp),
        ("MAIL.EXAMPLE.net", &net_fp),
        ("imap.example.com", &com_fp),
        ("mx.example.org", &default_fp),
        ("unknown.example.com", &default_fp),
        ("127.0.0.1", &default_fp),
    ] {
        let client = testing::client_config_trusting(&ca.pem);
        let pair = handshake(provider.acceptor(), client, host)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(&peer_fingerprint(&pair.0), want, "{host}");
    }
    let infos = provider.certificate_info();
    let names: Vec<&str> = infos.iter().map(|i| i.hostname_or_default()).collect();
    assert_eq!(names, ["default", "imap.example.com", "mail.example.net"]);

    // The same name twice is a configuration error.
    let mut dup = config.clone();
    let mut again = dup.tls.sni[0].clone();
    again.hostname = "mail.example.NET".into();
    dup.tls.sni.push(again);
    let e = TlsProvider::from_config(&dup).unwrap_err();
    assert!(matches!(e, TlsError::Config(_)), "{e}");
}

#[tokio::test]
async fn speaks_tls12_and_tls13_only() {
    assert_eq!(PROTOCOL_VERSIONS.len(), 2);
    assert_eq!(
        PROTOCOL_VERSIONS[0].version,
        rustls::ProtocolVersion::TLSv1_3
    );
    assert_eq!(
        PROTOCOL_VERSIONS[1].version,
        rustls::ProtocolVersion::TLSv1_2
    );

    let t = testing::self_signed("mx.example.org");
    for (version, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut pair = handshake(
            t.provider.acceptor(),
            client_with_versions(&t.ca_pem, &[version], &[]),
            "mx.example.org",
        )
        .await
        .unwrap();
        assert_eq!(pair.0.get_ref().1.protocol_version(), Some(want));
        assert_eq!(pair.1.get_ref().1.protocol_version(), Some(want));
        exchange(&mut pair, b"hello").await;
    }
}

#[tokio::test]
async fn alpn_only_when_asked_for() {
    let t = testing::self_signed("mx.example.org");
    let acceptor = t.provider.acceptor_with_alpn(&[b"h2", b"http/1.1"]);
    let pair = handshake(
        acceptor.clone(),
        client_with_versions(&t.ca_pem, PROTOCOL_VERSIONS, &[b"http/1.1"]),
        "mx.example.org",
    )
    .await
    .unwrap();
    assert_eq!(pair.1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(pair.0.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // A client offering only protocols the service does not speak is refused.
    assert!(
        handshake(
            acceptor,
            client_with_versions(&t.ca_pem, PROTOCOL_VERSIONS, &[b"imap"]),
            "mx.example.org",
        )
        .await
        .is_err()
    );

    // The plain acceptor ignores a client's ALPN offer.
    let pair = handshake(
        t.provider.acceptor(),
        client_with_versions(&t.ca_pem, PROTOCOL_VERSIONS, &[b"h2"]),
        "mx.example.org",
    )
    .await
    .unwrap();
    assert_eq!(pair.1.get_ref().1.alpn_protocol(), None);
}

#[tokio::test]
async fn reload_swaps_certificates_without_touching_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (cert, key, old_fp) = write_pair(dir.path(), "mx", &ca, &["mx.example.org"]);
    let provider = TlsProvider::from_config(&config_with(dir.path(), &cert, &key)).unwrap();
    let client = testing::client_config_trusting(&ca.pem);
    // Acceptors taken before the reload, as listeners hold them.
    let acceptor = provider.acceptor();
    let alpn_acceptor = provider.acceptor_with_alpn(&[b"http/1.1"]);

    assert_eq!(provider.reload().unwrap(), ReloadOutcome::Unchanged);

    let mut established = handshake(acceptor.clone(), Arc::clone(&client), "mx.example.org")
        .await
        .unwrap();
    exchange(&mut established, b"before").await;

    let (_, _, new_fp) = write_pair(dir.path(), "mx", &ca, &["mx.example.org"]);
    assert_ne!(old_fp, new_fp);
    match provider.reload().unwrap() {
        ReloadOutcome::Reloaded { certificates } => {
            assert_eq!(certificates[0].fingerprint_sha256, new_fp)
        }
        other => panic!("expected a reload, got {other:?}"),
    }
    assert_eq!(provider.certificate_info()[0].fingerprint_sha256, new_fp);

    // Fresh clients: a client that resumes its earlier session is not
    // shown a certificate again.
    for a in [acceptor, alpn_acceptor, provider.acceptor()] {
        let pair = handshake(
            a,
            testing::client_config_trusting(&ca.pem),
            "mx.example.org",
        )
        .await
        .unwrap();
        assert_eq!(peer_fingerprint(&pair.0), new_fp);
    }
    // The session made before the reload still works, with its certificate.
    exchange(&mut established, b"after the reload").await;
    assert_eq!(peer_fingerprint(&established.0), old_fp);
}

#[tokio::test]
async fn failed_reload_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (cert, key, fp) = write_pair(dir.path(), "mx", &ca, &["mx.example.org"]);
    let provider = TlsProvider::from_config(&config_with(dir.path(), &cert, &key)).unwrap();
    // A fresh client per handshake, so no session is resumed.
    let client = || testing::client_config_trusting(&ca.pem);

    replace_file(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let e = provider.reload().unwrap_err();
    assert!(matches!(e, TlsError::NotPem { .. }), "{e}");
    assert!(e.to_string().contains("mx-cert.pem"), "{e}");
    assert_eq!(provider.certificate_info()[0].fingerprint_sha256, fp);
    let pair = handshake(provider.acceptor(), client(), "mx.example.org")
        .await
        .unwrap();
    assert_eq!(peer_fingerprint(&pair.0), fp);

    // A new certificate whose key was not updated yet: refused too.
    let other = KeyPair::generate().unwrap();
    replace_file(&cert, leaf_pem(&ca, &["mx.example.org"], &other).as_bytes());
    let e = provider.reload().unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    assert_eq!(provider.certificate_info()[0].fingerprint_sha256, fp);
    let pair = handshake(provider.acceptor(), client(), "mx.example.org")
        .await
        .unwrap();
    assert_eq!(peer_fingerprint(&pair.0), fp);
}

#[tokio::test]
async fn watcher_reloads_on_change_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (cert, key, old_fp) = write_pair(dir.path(), "mx", &ca, &["mx.example.org"]);
    let provider = TlsProvider::from_config(&config_with(dir.path(), &cert, &key)).unwrap();
    let shutdown = CancellationToken::new();
    let handle = provider.spawn_watcher(shutdown.clone(), Duration::from_millis(20));

    let (_, _, new_fp) = write_pair(dir.path(), "mx", &ca, &["mx.example.org"]);
    assert_ne!(old_fp, new_fp);
    let mut seen = old_fp.clone();
    for _ in 0..500 {
        seen = provider.certificate_info()[0].fingerprint_sha256.clone();
        if seen == new_fp {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, new_fp, "the watcher did not pick up the new files");

    // A broken file is noticed but not served.
    replace_file(&key, b"garbage");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(provider.certificate_info()[0].fingerprint_sha256, new_fp);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the watcher ends on shutdown")
        .unwrap();
}

#[tokio::test]
async fn testing_helpers_give_a_trusted_provider() {
    let t = testing::self_signed("pop.example.org");
    assert_eq!(t.hostname, "pop.example.org");
    assert_eq!(
        t.provider.certificate_info()[0].fingerprint_sha256,
        t.fingerprint_sha256
    );
    assert_eq!(t.provider.reload().unwrap(), ReloadOutcome::Unchanged);
    let (c, s) = duplex(16 * 1024);
    let acceptor = t.provider.acceptor();
    let server = tokio::spawn(async move {
        let mut tls = acceptor.accept(s).await.unwrap();
        tls.write_all(b"+OK\r\n").await.unwrap();
        tls.flush().await.unwrap();
    });
    let mut tls = testing::connector_trusting(&t.ca_pem)
        .connect(testing::server_name("pop.example.org"), c)
        .await
        .unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"+OK\r\n");
    server.await.unwrap();

    // Another test certificate is not trusted by this client.
    let other = testing::self_signed("pop.example.org");
    assert!(
        handshake(
            other.provider.acceptor(),
            testing::client_config_trusting(&t.ca_pem),
            "pop.example.org"
        )
        .await
        .is_err()
    );
}

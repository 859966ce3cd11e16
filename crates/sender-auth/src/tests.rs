//! Cross-module tests: signing verified by mail-auth's own verifier (TXT
//! records injected into its resolver cache), and the inbound checks against
//! a stub DNS server on 127.0.0.1 (the real resolver path, `[dns]
//! nameservers` included).

use crate::test_support::{OTHER_KEY_PEM, TEST_KEY_PEM, config_in, install_key};
use crate::*;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::proto::op::{Message, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::TXT;
use mail_auth::hickory_resolver::proto::rr::{RData, Record, RecordType};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

// ---------------------------------------------------------------- signing

/// A static TXT "cache" for mail-auth: what the tests put in is what DNS says.
struct StaticTxt(Mutex<HashMap<Box<str>, Txt>>);

impl StaticTxt {
    fn with_domain_key(name: &str, txt_value: &str) -> StaticTxt {
        let key = DomainKey::parse(txt_value.as_bytes())
            .expect("our TXT value parses as a DKIM key record");
        let mut map = HashMap::new();
        map.insert(format!("{name}.").into_boxed_str(), Txt::from(key));
        StaticTxt(Mutex::new(map))
    }
}

impl ResolverCache<Box<str>, Txt> for StaticTxt {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }
    fn insert(&self, key: Box<str>, value: Txt, _: std::time::Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

/// A resolver with no nameservers: anything not in the static cache fails.
fn offline_authenticator() -> MessageAuthenticator {
    MessageAuthenticator::new(
        ResolverConfig::from_name_servers(vec![]),
        ResolverOpts::default(),
    )
    .unwrap()
}

fn signer_for(domain: &str, pem: &str) -> DkimSigner {
    let mut s = DkimSigner::new("postamt").unwrap();
    s.insert_pem(domain, pem.as_bytes()).unwrap();
    s
}

/// The TXT value published for the test key.
fn published_value(pem: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_in(tmp.path());
    install_key(&config, "example.org", pem);
    read_key_record(&config, "example.org")
        .unwrap()
        .unwrap()
        .txt_value
}

/// Verifies `signed` with mail-auth against the TXT record of `pem`.
async fn verify_with_mail_auth(signed: &[u8], pem: &str) -> Vec<DkimResult> {
    let cache = StaticTxt::with_domain_key("postamt._domainkey.example.org", &published_value(pem));
    let message = AuthenticatedMessage::parse(signed).unwrap();
    let auth = offline_authenticator();
    auth.verify_dkim(Parameters::new(&message).with_txt_cache(&cache))
        .await
        .into_iter()
        .map(|o| o.result().clone())
        .collect()
}

const MESSAGE: &str = "From: Alice <alice@example.org>\r\n\
To: bob@example.net\r\n\
Subject:  Hello   there \r\n\
Date: Mon, 01 Jun 2026 10:00:00 +0000\r\n\
Message-ID: <1@example.org>\r\n\
X-Unsigned: yes\r\n\
\r\n\
Hi Bob,\r\n\
\r\n\
see you.\r\n";

fn prepend(header: &str, message: &[u8]) -> Vec<u8> {
    let mut v = header.as_bytes().to_vec();
    v.extend_from_slice(message);
    v
}

fn tag(header: &str, name: &str) -> String {
    let unfolded: String = header.replace("\r\n", "").replace(['\t', ' '], "");
    unfolded
        .split(';')
        .find_map(|t| t.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {name}= in {header}"))
}

#[tokio::test]
async fn signature_round_trips_through_mail_auth() {
    let signer = signer_for("example.org", TEST_KEY_PEM);
    let header = signer
        .sign(MESSAGE.as_bytes(), "Example.org")
        .unwrap()
        .unwrap();
    assert!(header.starts_with("DKIM-Signature: "), "{header}");
    assert!(header.ends_with("\r\n"));
    assert_eq!(tag(&header, "c"), "relaxed/simple");
    assert_eq!(tag(&header, "a"), "rsa-sha256");
    assert_eq!(tag(&header, "d"), "example.org");
    assert_eq!(tag(&header, "s"), "postamt");
    let h: Vec<String> = tag(&header, "h")
        .split(':')
        .map(|s| s.to_ascii_lowercase())
        .collect();
    assert_eq!(
        h.iter().filter(|x| *x == "from").count(),
        2,
        "From oversigned: {h:?}"
    );
    for present in ["to", "subject", "date", "message-id"] {
        assert!(
            h.contains(&present.to_string()),
            "{present} missing from {h:?}"
        );
    }
    for absent in ["cc", "list-id", "reply-to", "x-unsigned"] {
        assert!(
            !h.contains(&absent.to_string()),
            "{absent} should not be in {h:?}"
        );
    }

    let signed = prepend(&header, MESSAGE.as_bytes());
    assert_eq!(
        verify_with_mail_auth(&signed, TEST_KEY_PEM).await,
        [DkimResult::Pass]
    );

    // The verification is meaningful: a changed body, an added From, or
    // another key all fail.
    let tampered = prepend(&header, MESSAGE.replace("see you", "see yuo").as_bytes());
    assert_ne!(
        verify_with_mail_auth(&tampered, TEST_KEY_PEM).await,
        [DkimResult::Pass]
    );
    let extra_from = prepend(
        &header,
        format!("From: mallory@evil.test\r\n{MESSAGE}").as_bytes(),
    );
    assert_ne!(
        verify_with_mail_auth(&extra_from, TEST_KEY_PEM).await,
        [DkimResult::Pass]
    );
    assert_ne!(
        verify_with_mail_auth(&signed, OTHER_KEY_PEM).await,
        [DkimResult::Pass]
    );
}

/// mail-auth 0.13.3 mis-canonicalises trailing whitespace-only lines in
/// *relaxed* bodies; we sign `simple` bodies, which must verify.
#[tokio::test]
async fn body_ending_in_whitespace_only_lines_signs_and_verifies() {
    let message = "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: ws\r\n\r\nText\r\n \r\n\t\r\n  \t \r\n\r\n\r\n";
    let signer = signer_for("example.org", TEST_KEY_PEM);
    let header = signer
        .sign(message.as_bytes(), "example.org")
        .unwrap()
        .unwrap();
    assert_eq!(tag(&header, "c"), "relaxed/simple");
    // bh= is the RFC 6376 simple body hash, computed independently here:
    // the body with its trailing empty lines reduced to one CRLF.
    let body = message.split_once("\r\n\r\n").unwrap().1;
    let mut canonical = body.trim_end_matches("\r\n").to_string();
    canonical.push_str("\r\n");
    assert_eq!(canonical, "Text\r\n \r\n\t\r\n  \t \r\n");
    let digest = <sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes());
    use base64::Engine;
    assert_eq!(
        tag(&header, "bh"),
        base64::engine::general_purpose::STANDARD.encode(digest)
    );
    let signed = prepend(&header, message.as_bytes());
    assert_eq!(
        verify_with_mail_auth(&signed, TEST_KEY_PEM).await,
        [DkimResult::Pass]
    );
    // Simple body canonicalisation keeps those lines: dropping one breaks it.
    let shortened = prepend(&header, message.replacen("\t\r\n", "", 1).as_bytes());
    assert_ne!(
        verify_with_mail_auth(&shortened, TEST_KEY_PEM).await,
        [DkimResult::Pass]
    );
}

#[test]
fn signs_only_for_the_exact_domain_of_a_key() {
    let signer = signer_for("example.org", TEST_KEY_PEM);
    assert!(signer.has_key("EXAMPLE.org."));
    assert!(signer.sign(MESSAGE.as_bytes(), "sub.example.org").is_none());
    assert!(signer.sign(MESSAGE.as_bytes(), "org").is_none());
    assert!(signer.sign(MESSAGE.as_bytes(), "example.net").is_none());
    assert!(signer.sign(MESSAGE.as_bytes(), "../example.org").is_none());
    assert!(signer.sign(MESSAGE.as_bytes(), "example.org.").is_some());
}

#[test]
fn load_reads_key_files_ignores_others_and_names_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_in(tmp.path());
    // No directory: no keys, no error.
    assert!(DkimSigner::load(&config).unwrap().domains().is_empty());

    install_key(&config, "example.org", TEST_KEY_PEM);
    install_key(&config, "Example.NET", OTHER_KEY_PEM);
    let dir = config.dkim_key_dir();
    std::fs::write(dir.join("README"), "not a key").unwrap();
    std::fs::write(dir.join(".example.org.key.tmp.42"), "partial").unwrap();
    std::fs::write(dir.join("example.org.pem"), "junk").unwrap();
    let signer = DkimSigner::load(&config).unwrap();
    assert_eq!(signer.domains(), ["example.net", "example.org"]);
    assert!(
        signer
            .sign(MESSAGE.as_bytes(), "example.net")
            .unwrap()
            .is_ok()
    );

    // sign = false: nothing loaded, nothing signed.
    let mut off = config.clone();
    off.dkim.sign = false;
    let signer = DkimSigner::load(&off).unwrap();
    assert!(signer.sign(MESSAGE.as_bytes(), "example.org").is_none());

    std::fs::write(
        dir.join("broken.test.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = DkimSigner::load(&config).unwrap_err();
    assert!(matches!(err, SenderAuthError::BadKey { .. }), "{err}");
    assert!(err.to_string().contains("broken.test.key"), "{err}");
}

// ------------------------------------------------------------ stub DNS

/// A UDP DNS server on 127.0.0.1 answering from a fixed table: TXT records
/// by name, NXDOMAIN for every other name.
async fn stub_dns(txt: &[(&str, &str)]) -> SocketAddr {
    let table: HashMap<String, Vec<String>> = txt.iter().fold(HashMap::new(), |mut m, (n, v)| {
        m.entry(format!("{}.", n.to_ascii_lowercase()))
            .or_default()
            .push(v.to_string());
        m
    });
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            if let Some(q) = query.queries.first() {
                reply.add_query(q.clone());
                let name = q.name().to_ascii().to_ascii_lowercase();
                match table.get(&name) {
                    Some(values) if q.query_type() == RecordType::TXT => {
                        for v in values {
                            let strings = v
                                .as_bytes()
                                .chunks(255)
                                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                                .collect();
                            reply.add_answer(Record::from_rdata(
                                q.name().clone(),
                                300,
                                RData::TXT(TXT::new(strings)),
                            ));
                        }
                    }
                    Some(_) => {}
                    None => reply.metadata.response_code = ResponseCode::NXDomain,
                }
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}

const GOOD_IP: &str = "192.0.2.10";
const BAD_IP: &str = "198.51.100.7";

fn verifier(
    nameserver: SocketAddr,
    dmarc: postamt_config::DmarcAction,
) -> (SenderVerifier, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = config_in(tmp.path());
    config.dns.nameservers = vec![nameserver.to_string()];
    config.sender_auth.dmarc = dmarc;
    let limits = VerifyLimits {
        query_timeout: Duration::from_millis(500),
        spf_timeout: Duration::from_secs(3),
        dkim_timeout: Duration::from_secs(3),
        dmarc_timeout: Duration::from_secs(3),
    };
    (SenderVerifier::with_limits(&config, limits).unwrap(), tmp)
}

fn zone(key_value: &str) -> Vec<(&'static str, String)> {
    vec![
        ("example.org", format!("v=spf1 ip4:{GOOD_IP} -all")),
        (
            "_dmarc.example.org",
            "v=DMARC1; p=reject; rua=mailto:dmarc@example.org".into(),
        ),
        ("postamt._domainkey.example.org", key_value.to_string()),
        ("quarantine.test", format!("v=spf1 ip4:{GOOD_IP} -all")),
        ("_dmarc.quarantine.test", "v=DMARC1; p=quarantine".into()),
        ("nodmarc.test", format!("v=spf1 ip4:{GOOD_IP} -all")),
        ("mx1.example.org", format!("v=spf1 ip4:{GOOD_IP} -all")),
    ]
}

async fn zone_server() -> SocketAddr {
    let z = zone(&published_value(TEST_KEY_PEM));
    let refs: Vec<(&str, &str)> = z.iter().map(|(n, v)| (*n, v.as_str())).collect();
    stub_dns(&refs).await
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn assert_folded_header(ar: &str, hostname: &str) {
    assert!(
        ar.starts_with(&format!("Authentication-Results: {hostname};")),
        "{ar}"
    );
    assert!(ar.ends_with("\r\n"), "{ar:?}");
    let body = &ar[..ar.len() - 2];
    assert!(
        !body.contains('\n') || body.split("\r\n").skip(1).all(|l| l.starts_with('\t')),
        "badly folded: {ar:?}"
    );
    assert!(
        !body.replace("\r\n", "").contains(['\r', '\n']),
        "bare CR/LF: {ar:?}"
    );
}

#[tokio::test]
async fn signed_aligned_mail_passes_spf_dkim_and_dmarc() {
    let ns = zone_server().await;
    let (v, _tmp) = verifier(ns, postamt_config::DmarcAction::Honor);
    let signer = signer_for("example.org", TEST_KEY_PEM);
    let header = signer
        .sign(MESSAGE.as_bytes(), "example.org")
        .unwrap()
        .unwrap();
    let signed = prepend(&header, MESSAGE.as_bytes());

    let verdict = v
        .check(&signed, ip(GOOD_IP), "mx1.example.org", "alice@example.org")
        .await;
    assert_eq!(verdict.spf, AuthResult::Pass);
    assert_eq!(verdict.dkim, AuthResult::Pass);
    assert_eq!(verdict.dmarc, DmarcOutcome::Pass);
    assert_eq!(verdict.from_domain.as_deref(), Some("example.org"));
    assert_eq!(v.action(&verdict), Action::Accept);
    let ar = &verdict.authentication_results;
    assert_folded_header(ar, "mail.example.org");
    assert!(ar.contains("spf=pass"), "{ar}");
    assert!(ar.contains("smtp.mailfrom=alice@example.org"), "{ar}");
    assert!(
        ar.contains("dkim=pass header.d=example.org header.s=postamt"),
        "{ar}"
    );
    assert!(
        ar.contains("dmarc=pass header.from=example.org policy.dmarc=reject"),
        "{ar}"
    );
    let (spf_at, dkim_at, dmarc_at) = (
        ar.find("spf=").unwrap(),
        ar.find("dkim=").unwrap(),
        ar.find("dmarc=").unwrap(),
    );
    assert!(spf_at < dkim_at && dkim_at < dmarc_at, "{ar}");
}

#[tokio::test]
async fn trailing_whitespace_lines_verify_inbound_too() {
    let ns = zone_server().await;
    let (v, _tmp) = verifier(ns, postamt_config::DmarcAction::Honor);
    let message = "From: alice@example.org\r\nSubject: ws\r\n\r\nText\r\n \r\n\t\r\n\r\n";
    let header = signer_for("example.org", TEST_KEY_PEM)
        .sign(message.as_bytes(), "example.org")
        .unwrap()
        .unwrap();
    // From an address SPF does not allow: DKIM alone carries DMARC.
    let verdict = v
        .check(
            &prepend(&header, message.as_bytes()),
            ip(BAD_IP),
            "relay.test",
            "list-bounces@relay.test",
        )
        .await;
    assert_eq!(verdict.dkim, AuthResult::Pass);
    assert_eq!(verdict.dmarc, DmarcOutcome::Pass);
}

#[tokio::test]
async fn spf_fail_with_p_reject_is_rejected_when_honoured_and_accepted_when_reporting() {
    let ns = zone_server().await;
    let (v, _tmp) = verifier(ns, postamt_config::DmarcAction::Honor);
    let verdict = v
        .check(
            MESSAGE.as_bytes(),
            ip(BAD_IP),
            "evil.test",
            "alice@example.org",
        )
        .await;
    assert_eq!(verdict.spf, AuthResult::Fail);
    assert_eq!(verdict.dkim, AuthResult::None);
    assert_eq!(
        verdict.dmarc,
        DmarcOutcome::Fail {
            policy: DmarcPolicy::Reject
        }
    );
    match v.action(&verdict) {
        Action::Reject(text) => {
            assert!(text.starts_with("550 5.7.1 "), "{text}");
            assert!(text.contains("example.org"), "{text}");
            assert!(!text.contains(['\r', '\n']));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let ar = &verdict.authentication_results;
    assert_folded_header(ar, "mail.example.org");
    assert!(ar.contains("spf=fail"), "{ar}");
    assert!(ar.contains("dkim=none"), "{ar}");
    assert!(ar.contains("dmarc=fail"), "{ar}");
    assert!(ar.contains("policy.dmarc=reject"), "{ar}");

    let (report, _tmp2) = verifier(ns, postamt_config::DmarcAction::Report);
    let verdict = report
        .check(
            MESSAGE.as_bytes(),
            ip(BAD_IP),
            "evil.test",
            "alice@example.org",
        )
        .await;
    assert_eq!(
        verdict.dmarc,
        DmarcOutcome::Fail {
            policy: DmarcPolicy::Reject
        }
    );
    assert_eq!(report.action(&verdict), Action::Accept);
}

#[tokio::test]
async fn p_quarantine_quarantines_and_spf_pass_alone_passes() {
    let ns = zone_server().await;
    let (v, _tmp) = verifier(ns, postamt_config::DmarcAction::Honor);
    let message = MESSAGE.replace("alice@example.org", "alice@quarantine.test");
    let bad = v
        .check(
            message.as_bytes(),
            ip(BAD_IP),
            "evil.test",
            "alice@quarantine.test",
        )
        .await;
    assert_eq!(
        bad.dmarc,
        DmarcOutcome::Fail {
            policy: DmarcPolicy::Quarantine
        }
    );
    assert_eq!(v.action(&bad), Action::Quarantine);

    let good = v
        .check(
            message.as_bytes(),
            ip(GOOD_IP),
            "mx.quarantine.test",
            "alice@quarantine.test",
        )
        .await;
    assert_eq!(good.spf, AuthResult::Pass);
    assert_eq!(good.dmarc, DmarcOutcome::Pass);
    assert_eq!(v.action(&good), Action::Accept);
}

#[tokio::test]
async fn no_dmarc_record_and_null_sender() {
    let ns = zone_server().await;
    let (v, _tmp) = verifier(ns, postamt_config::DmarcAction::Honor);
    let message = MESSAGE.replace("alice@example.org", "alice@nodmarc.test");
    let verdict = v
        .check(
            message.as_bytes(),
            ip(BAD_IP),
            "evil.test",
            "alice@nodmarc.test",
        )
        .await;
    assert_eq!(verdict.spf, AuthResult::Fail);
    assert_eq!(verdict.dmarc, DmarcOutcome::None);
    assert_eq!(v.action(&verdict), Action::Accept);

    // Null sender: SPF is checked for the HELO name.
    let bounce = v
        .check(MESSAGE.as_bytes(), ip(GOOD_IP), "mx1.example.org", "")
        .await;
    assert_eq!(bounce.spf, AuthResult::Pass);
    assert!(
        bounce
            .authentication_results
            .contains("smtp.helo=mx1.example.org"),
        "{}",
        bounce.authentication_results
    );
    // ...and that HELO domain aligns (relaxed) with the From domain.
    assert_eq!(bounce.dmarc, DmarcOutcome::Pass);

    // An address literal HELO with the null sender: nothing to look up.
    let literal = v
        .check(MESSAGE.as_bytes(), ip(BAD_IP), "[198.51.100.7]", "")
        .await;
    assert_eq!(literal.spf, AuthResult::None);
    assert_eq!(
        literal.dmarc,
        DmarcOutcome::Fail {
            policy: DmarcPolicy::Reject
        }
    );
}

#[tokio::test]
async fn unparseable_or_fromless_messages_get_dmarc_none() {
    let ns = zone_server().await;
    let (v, _tmp) = verifier(ns, postamt_config::DmarcAction::Honor);
    let verdict = v
        .check(
            b"Subject: no from\r\n\r\nbody\r\n",
            ip(GOOD_IP),
            "mx1.example.org",
            "alice@example.org",
        )
        .await;
    assert_eq!(verdict.spf, AuthResult::Pass);
    assert_eq!(verdict.dmarc, DmarcOutcome::None);
    assert_eq!(verdict.from_domain, None);
    assert!(verdict.authentication_results.contains("dmarc=none"));
    assert_folded_header(&verdict.authentication_results, "mail.example.org");
}

#[tokio::test]
async fn a_silent_nameserver_gives_temperror_not_a_hang() {
    // A UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut config = config_in(tmp.path());
    config.dns.nameservers = vec![addr.to_string()];
    let limits = VerifyLimits {
        query_timeout: Duration::from_millis(200),
        spf_timeout: Duration::from_secs(1),
        dkim_timeout: Duration::from_secs(1),
        dmarc_timeout: Duration::from_secs(1),
    };
    let v = SenderVerifier::with_limits(&config, limits).unwrap();
    let signed = prepend(
        &signer_for("example.org", TEST_KEY_PEM)
            .sign(MESSAGE.as_bytes(), "example.org")
            .unwrap()
            .unwrap(),
        MESSAGE.as_bytes(),
    );
    let verdict = v
        .check(&signed, ip(GOOD_IP), "mx1.example.org", "alice@example.org")
        .await;
    assert_eq!(verdict.spf, AuthResult::TempError);
    assert_eq!(verdict.dkim, AuthResult::TempError);
    assert_eq!(verdict.dmarc, DmarcOutcome::TempError);
    assert_eq!(v.action(&verdict), Action::Accept);
    assert!(
        verdict.authentication_results.contains("spf=temperror"),
        "{}",
        verdict.authentication_results
    );
    assert!(
        verdict.authentication_results.contains("dmarc=temperror"),
        "{}",
        verdict.authentication_results
    );
    drop(silent);
}

#[test]
fn check_future_is_send_and_bad_nameservers_are_refused() {
    fn assert_send<T: Send>(_: &T) {}
    let tmp = tempfile::tempdir().unwrap();
    let mut config = config_in(tmp.path());
    config.dns.nameservers = vec!["127.0.0.1:5353".into()];
    let v = SenderVerifier::new(&config).unwrap();
    let fut = v.check(b"", ip(GOOD_IP), "h", "");
    assert_send(&fut);
    drop(fut);

    config.dns.nameservers = vec!["not-an-address".into()];
    assert!(matches!(
        SenderVerifier::new(&config),
        Err(SenderAuthError::BadNameserver(_))
    ));
}

#[test]
fn decide_follows_the_configured_mode() {
    let verdict = |dmarc| Verdict {
        authentication_results: String::new(),
        spf: AuthResult::Fail,
        dkim: AuthResult::None,
        dmarc,
        from_domain: Some("example.org\r\nX".into()),
    };
    use postamt_config::DmarcAction::{Honor, Report};
    let reject = verdict(DmarcOutcome::Fail {
        policy: DmarcPolicy::Reject,
    });
    match decide(Honor, &reject) {
        Action::Reject(t) => assert_eq!(
            t,
            "550 5.7.1 Message rejected: it fails the DMARC policy of example.orgX"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(Report, &reject), Action::Accept);
    assert_eq!(
        decide(
            Honor,
            &verdict(DmarcOutcome::Fail {
                policy: DmarcPolicy::Quarantine
            })
        ),
        Action::Quarantine
    );
    assert_eq!(
        decide(
            Report,
            &verdict(DmarcOutcome::Fail {
                policy: DmarcPolicy::Quarantine
            })
        ),
        Action::Accept
    );
    for outcome in [
        DmarcOutcome::Fail {
            policy: DmarcPolicy::None,
        },
        DmarcOutcome::Pass,
        DmarcOutcome::None,
        DmarcOutcome::TempError,
        DmarcOutcome::PermError,
    ] {
        assert_eq!(
            decide(Honor, &verdict(outcome)),
            Action::Accept,
            "{outcome:?}"
        );
    }
}

//! Tests of the DNS verdicts (pure) and of the whole check against a stub
//! DNS server on loopback.

use super::*;

fn found<T>(v: Vec<T>) -> Answer<T> {
    Answer::Found(v)
}

fn txt(v: &[&str]) -> Answer<String> {
    Answer::Found(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn mx_verdicts() {
    let want = "10 mx.example.org.";
    assert_eq!(
        judge_mx(want, &found(vec![(10, "MX.example.org.".into())])).0,
        Verdict::Ok
    );
    assert_eq!(
        judge_mx(
            want,
            &found(vec![
                (5, "backup.example.net.".into()),
                (10, "mx.example.org".into())
            ])
        )
        .0,
        Verdict::Ok
    );
    let (v, d) = judge_mx(want, &found(vec![(10, "mail.other.net.".into())]));
    assert_eq!(v, Verdict::Wrong);
    assert!(d.unwrap().contains("mail.other.net"));
    assert_eq!(
        judge_mx(want, &found(vec![(0, ".".into())])).0,
        Verdict::Wrong
    );
    assert_eq!(judge_mx(want, &Answer::Nothing).0, Verdict::Missing);
    assert_eq!(
        judge_mx(want, &Answer::Failed("SERVFAIL".into())).0,
        Verdict::Unknown
    );
}

#[test]
fn spf_verdicts() {
    let want = "v=spf1 mx -all";
    assert_eq!(
        judge_spf(
            want,
            &txt(&["v=spf1  MX -all", "google-site-verification=x"])
        ),
        (Verdict::Ok, None)
    );
    let (v, d) = judge_spf(want, &txt(&["v=spf1 mx include:relay.example.net ~all"]));
    assert_eq!(v, Verdict::Ok);
    assert!(d.is_some(), "a differing record says so");
    assert_eq!(
        judge_spf(want, &txt(&["v=spf1 ip4:192.0.2.1 -all"])).0,
        Verdict::Wrong
    );
    assert_eq!(
        judge_spf(want, &txt(&["v=spf1 mx -all", "v=spf1 a -all"])).0,
        Verdict::Wrong
    );
    assert_eq!(judge_spf(want, &txt(&["other"])).0, Verdict::Missing);
    assert_eq!(judge_spf(want, &Answer::Nothing).0, Verdict::Missing);
    assert_eq!(
        judge_spf(want, &Answer::Failed("timeout".into())).0,
        Verdict::Unknown
    );
}

#[test]
fn dkim_verdicts() {
    let want = "v=DKIM1; k=rsa; p=MIIBabc";
    assert_eq!(
        judge_dkim(want, &txt(&["v=DKIM1; k=rsa; p=MIIB abc"])).0,
        Verdict::Ok
    );
    assert_eq!(
        judge_dkim(want, &txt(&["v=DKIM1; k=rsa; p=MIIBxyz"])).0,
        Verdict::Wrong
    );
    assert_eq!(judge_dkim(want, &Answer::Nothing).0, Verdict::Missing);
    // No key on the server yet.
    let (v, d) = judge_dkim("", &Answer::Nothing);
    assert_eq!(v, Verdict::Missing);
    assert!(d.unwrap().contains("dkim generate"));
    assert_eq!(judge_dkim("", &txt(&["v=DKIM1; p=abc"])).0, Verdict::Wrong);
    assert_eq!(
        judge_dkim(want, &Answer::Failed("x".into())).0,
        Verdict::Unknown
    );
}

#[test]
fn dmarc_verdicts() {
    let want = "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org";
    assert_eq!(judge_dmarc(want, &txt(&[want])), (Verdict::Ok, None));
    let (v, d) = judge_dmarc(want, &txt(&["v=DMARC1; p=reject"]));
    assert_eq!(v, Verdict::Ok);
    assert!(d.is_some());
    let (v, d) = judge_dmarc(want, &txt(&["v=DMARC1; p=none"]));
    assert_eq!(v, Verdict::Ok);
    assert!(d.unwrap().contains("monitors"));
    assert_eq!(
        judge_dmarc(want, &txt(&["v=DMARC1; p=maybe"])).0,
        Verdict::Wrong
    );
    assert_eq!(judge_dmarc(want, &txt(&[want, want])).0, Verdict::Wrong);
    assert_eq!(judge_dmarc(want, &Answer::Nothing).0, Verdict::Missing);
}

#[test]
fn autoconfig_verdicts() {
    let host = "mx.example.org";
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let other: IpAddr = "198.51.100.1".parse().unwrap();
    let none: Answer<String> = Answer::Nothing;
    let no_ip: Answer<IpAddr> = Answer::Nothing;
    assert_eq!(
        judge_autoconfig(host, &txt(&["mx.example.org."]), &no_ip, &no_ip).0,
        Verdict::Ok
    );
    assert_eq!(
        judge_autoconfig(host, &txt(&["web.example.org."]), &no_ip, &no_ip).0,
        Verdict::Wrong
    );
    assert_eq!(
        judge_autoconfig(host, &none, &found(vec![ip]), &found(vec![ip])).0,
        Verdict::Ok
    );
    assert_eq!(
        judge_autoconfig(host, &none, &found(vec![other]), &found(vec![ip])).0,
        Verdict::Wrong
    );
    assert_eq!(
        judge_autoconfig(host, &none, &no_ip, &found(vec![ip])).0,
        Verdict::Missing
    );
    assert_eq!(
        judge_autoconfig(host, &none, &found(vec![ip]), &Answer::Failed("x".into())).0,
        Verdict::Unknown
    );
}

#[test]
fn the_autoconfig_record_points_at_the_hostname() {
    let r = autoconfig_record("MX.Example.org.", "example.org");
    assert_eq!(
        (r.name.as_str(), r.rtype.as_str(), r.value.as_str()),
        ("autoconfig.example.org.", "CNAME", "mx.example.org.")
    );
}

/// A stub DNS server on 127.0.0.1 answering from a table over UDP.
mod stub {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::{A, CNAME, MX, TXT};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, SocketAddr};

    pub type Zone = HashMap<(String, RecordType), Vec<RData>>;

    pub fn zone() -> Zone {
        let n = |s: &str| Name::from_ascii(s).unwrap();
        let mut z: Zone = HashMap::new();
        let mut add = |name: &str, t: RecordType, d: RData| {
            z.entry((name.to_string(), t)).or_default().push(d);
        };
        add(
            "example.org.",
            RecordType::MX,
            RData::MX(MX::new(10, n("mx.example.org."))),
        );
        add(
            "example.org.",
            RecordType::TXT,
            RData::TXT(TXT::new(vec!["v=spf1 mx -all".into()])),
        );
        add(
            "example.org.",
            RecordType::TXT,
            RData::TXT(TXT::new(vec!["v=spf1 a -all".into()])),
        );
        // No DKIM record; DMARC split over two strings.
        add(
            "_dmarc.example.org.",
            RecordType::TXT,
            RData::TXT(TXT::new(vec![
                "v=DMARC1; p=quarantine; ".into(),
                "rua=mailto:postmaster@example.org".into(),
            ])),
        );
        add(
            "autoconfig.example.org.",
            RecordType::CNAME,
            RData::CNAME(CNAME(n("mx.example.org."))),
        );
        add(
            "mx.example.org.",
            RecordType::A,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 10))),
        );
        z
    }

    /// Serves `zone` until the test ends; names `servfail.` get SERVFAIL.
    pub async fn start(zone: Zone) -> SocketAddr {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.metadata.message_type = MessageType::Response;
                r.metadata.authoritative = true;
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.recursion_available = true;
                for query in &q.queries {
                    r.add_query(query.clone());
                    let name = query.name().to_ascii().to_ascii_lowercase();
                    let known = zone.keys().any(|(k, _)| *k == name);
                    if !known {
                        r.metadata.response_code = ResponseCode::NXDomain;
                    }
                    if let Some(data) = zone.get(&(name.clone(), query.query_type())) {
                        for d in data {
                            r.add_answer(Record::from_rdata(query.name().clone(), 1, d.clone()));
                        }
                    }
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        addr
    }
}

#[tokio::test]
async fn the_check_against_a_stub_dns() {
    let addr = stub::start(stub::zone()).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "hostname = \"mx.example.org\"\ndomains = [\"example.org\"]\ndata_dir = \"{}\"\n[dns]\nnameservers = [\"{addr}\"]\n",
        dir.path().display()
    );
    let config = postamt_config::parse(&text, std::path::Path::new("x.toml")).unwrap();
    let admin = Admin::open(std::sync::Arc::new(config)).unwrap();
    let checks = admin.dns_check("example.org").await.unwrap();
    let got: Vec<(&str, Verdict)> = checks
        .iter()
        .map(|c| (c.kind.as_str(), c.verdict))
        .collect();
    assert_eq!(
        got,
        vec![
            ("MX", Verdict::Ok),
            ("SPF", Verdict::Wrong),
            ("DKIM", Verdict::Missing),
            ("DMARC", Verdict::Ok),
            ("autoconfig", Verdict::Ok),
        ],
        "{checks:#?}"
    );
    assert_eq!(checks[0].found, vec!["10 mx.example.org."]);
    assert_eq!(checks[1].found.len(), 2);
    assert!(
        checks[1]
            .detail
            .as_deref()
            .unwrap()
            .contains("several SPF records")
    );
    assert_eq!(
        checks[3].found,
        vec!["v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org"]
    );
    assert_eq!(checks[4].rtype, "CNAME");

    // A domain nobody published anything for: everything missing.
    let checks = admin.dns_check("example.net").await.unwrap();
    assert!(
        checks.iter().all(|c| c.verdict == Verdict::Missing),
        "{checks:#?}"
    );
}

#[tokio::test]
async fn an_unreachable_nameserver_is_unknown_not_an_error() {
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "hostname = \"mx.example.org\"\ndata_dir = \"{}\"\n[dns]\nnameservers = [\"{addr}\"]\n",
        dir.path().display()
    );
    let config = postamt_config::parse(&text, std::path::Path::new("x.toml")).unwrap();
    let admin = Admin::open(std::sync::Arc::new(config)).unwrap();
    let checks = admin.dns_check("example.org").await.unwrap();
    assert!(
        checks.iter().all(|c| c.verdict == Verdict::Unknown),
        "{checks:#?}"
    );
    drop(silent);
}

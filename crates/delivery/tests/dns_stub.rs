//! The real resolver (hickory) against a stub DNS server on 127.0.0.1,
//! configured through `[dns] nameservers`: MX records, a domain without MX
//! (implicit MX), a null MX, NXDOMAIN and SERVFAIL, and A/AAAA lookups.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use postamt_config::Config;
use postamt_delivery::dns::{DnsError, HickoryResolver, MxAnswer, MxHost, Resolver};
use postamt_delivery::route::{self, RouteSettings};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::net::UdpSocket;

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test name")
}

/// The stub's zone: answers (or the response code) per (name, type).
fn answer(qname: &str, qtype: RecordType) -> (ResponseCode, Vec<RData>) {
    use RecordType as T;
    let mx = |p: u16, h: &str| RData::MX(MX::new(p, name(h)));
    match (qname.to_ascii_lowercase().as_str(), qtype) {
        ("remote.test.", T::MX) => (
            ResponseCode::NoError,
            vec![mx(20, "mx2.remote.test."), mx(10, "mx1.remote.test.")],
        ),
        ("mx1.remote.test.", T::A) => (
            ResponseCode::NoError,
            vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))],
        ),
        ("mx1.remote.test.", T::AAAA) => (
            ResponseCode::NoError,
            vec![RData::AAAA(AAAA("2001:db8::1".parse().expect("v6")))],
        ),
        ("nullmx.test.", T::MX) => (ResponseCode::NoError, vec![mx(0, ".")]),
        ("nomx.test.", T::A) => (
            ResponseCode::NoError,
            vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))],
        ),
        ("nomx.test." | "remote.test." | "nullmx.test." | "mx1.remote.test.", _) => {
            (ResponseCode::NoError, vec![])
        }
        ("broken.test.", _) => (ResponseCode::ServFail, vec![]),
        _ => (ResponseCode::NXDomain, vec![]),
    }
}

/// Serves the zone over UDP until the test ends; returns its address.
async fn stub_dns() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = sock.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
            resp.metadata.recursion_desired = req.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            resp.add_queries(req.queries.clone());
            if let Some(q) = req.queries.first() {
                let (code, data) = answer(&q.name().to_ascii(), q.query_type());
                resp.metadata.response_code = code;
                for d in data {
                    resp.add_answer(Record::from_rdata(q.name().clone(), 60, d));
                }
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = sock.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn the_real_resolver_reads_mx_null_mx_nxdomain_and_servfail() {
    let dns = stub_dns().await;
    let r = HickoryResolver::new(&[dns.to_string()]).expect("resolver");

    let mut hosts = match r.mx("remote.test").await.expect("MX") {
        MxAnswer::Hosts(h) => h,
        other => panic!("{other:?}"),
    };
    hosts.sort_by_key(|h| h.preference);
    assert_eq!(
        hosts,
        [
            MxHost {
                preference: 10,
                host: "mx1.remote.test".into()
            },
            MxHost {
                preference: 20,
                host: "mx2.remote.test".into()
            },
        ]
    );
    let addrs = r.addresses("mx1.remote.test").await.expect("addresses");
    assert!(
        addrs.contains(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        "{addrs:?}"
    );
    assert!(
        addrs.contains(&IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap())),
        "{addrs:?}"
    );

    assert_eq!(r.mx("nullmx.test").await, Ok(MxAnswer::Null));
    assert_eq!(r.mx("nomx.test").await, Ok(MxAnswer::NoMx));
    assert_eq!(
        r.addresses("nomx.test").await,
        Ok(vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))])
    );
    assert_eq!(
        r.mx("nowhere.test").await,
        Err(DnsError::NxDomain("nowhere.test".into()))
    );
    assert!(matches!(
        r.mx("broken.test").await,
        Err(DnsError::Temporary(..))
    ));
    assert_eq!(
        r.addresses("mx2.remote.test").await,
        Err(DnsError::NxDomain("mx2.remote.test".into()))
    );

    // Through routing: the null MX and NXDOMAIN bounce, SERVFAIL waits.
    let cfg = Config {
        hostname: "mx.example.org".into(),
        ..Config::default()
    };
    let settings = RouteSettings::from_config(&cfg).unwrap();
    let f = route::route("nullmx.test", &settings, &r)
        .await
        .unwrap_err();
    assert_eq!((f.status.as_str(), f.is_permanent()), ("5.1.10", true));
    let f = route::route("nowhere.test", &settings, &r)
        .await
        .unwrap_err();
    assert_eq!((f.status.as_str(), f.is_permanent()), ("5.1.2", true));
    let f = route::route("broken.test", &settings, &r)
        .await
        .unwrap_err();
    assert_eq!((f.status.as_str(), f.is_permanent()), ("4.4.3", false));
    let ok = route::route("remote.test", &settings, &r).await.unwrap();
    let names: Vec<&str> = ok.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["mx1.remote.test", "mx2.remote.test"]);
}

#[test]
fn bad_nameservers_are_refused() {
    assert!(HickoryResolver::new(&["dns.example:53".to_string()]).is_err());
}

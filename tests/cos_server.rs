#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end behaviour of the fake COS server over real HTTP: presigned URL
//! checks in both shapes, expiry, Range/206/416, conditionals, the CRC-64
//! header, traffic limits and every switchable fault.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration};
use tcbackup::clock::{Clock, ManualClock};
use tcbackup::emulator::cos::{
    fill_generated, router, CosStore, Fault, FaultTarget, ObjectBody, ObjectOptions, Repeat,
    UrlShape,
};

const SECRET_ID: &str = "AKIDcosTest";
const SECRET_KEY: &str = "cosTestSecretKey";

struct Server {
    store: Arc<CosStore>,
    clock: ManualClock,
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        let clock = ManualClock::fixed(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        let store = CosStore::new(Arc::new(clock.clone()), SECRET_ID, SECRET_KEY);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::clone(&store));
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            store,
            clock,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    fn put(&self, key: &str, body: ObjectBody) {
        self.store.put(key, body, ObjectOptions::default()).unwrap();
    }

    fn url(&self, key: &str) -> String {
        self.store
            .presign(&self.base, key, 3600, UrlShape::TopLevel)
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }
}

fn generated(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill_generated(seed, offset, &mut out);
    out
}

fn crc64(data: &[u8]) -> u64 {
    let mut d = crc64fast::Digest::new();
    d.write(data);
    d.sum64()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn xml_code(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    assert_eq!(header(&resp, "content-type"), Some("application/xml"));
    let body = resp.text().await.unwrap();
    let field = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open).map(|i| i + open.len()).unwrap_or(0);
        let end = body.find(&close).unwrap_or(0);
        body[start..end.max(start)].to_string()
    };
    for f in ["Resource", "RequestId", "TraceId"] {
        assert!(!field(f).is_empty(), "{f} missing in {body}");
    }
    (status, field("Code"), field("Message"))
}

#[tokio::test]
async fn both_url_shapes_serve_the_whole_object_with_cos_headers() {
    let srv = Server::start().await;
    srv.put(
        "data/a.rdb",
        ObjectBody::Bytes(Bytes::from_static(b"123456789")),
    );
    for shape in [UrlShape::TopLevel, UrlShape::Wrapped] {
        let url = srv.store.presign(&srv.base, "data/a.rdb", 21_600, shape);
        let resp = srv.get(&url, &[]).await;
        assert_eq!(resp.status(), 200, "{shape:?}");
        assert_eq!(header(&resp, "content-length"), Some("9"));
        assert_eq!(header(&resp, "server"), Some("tencent-cos"));
        assert_eq!(
            header(&resp, "x-cos-hash-crc64ecma"),
            Some("11051210869376104954"),
            "CRC-64/XZ check value of 123456789"
        );
        let etag = header(&resp, "etag").unwrap();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert!(header(&resp, "last-modified").unwrap().ends_with(" GMT"));
        assert!(header(&resp, "x-cos-request-id").is_some());
        assert_eq!(resp.bytes().await.unwrap(), &b"123456789"[..]);
    }
    let stats = srv.store.stats("data/a.rdb");
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.bytes_served, 18);
    assert_eq!(stats.statuses(), vec![200, 200]);
}

#[tokio::test]
async fn ranged_get_answers_206_with_content_range_and_whole_object_crc() {
    let srv = Server::start().await;
    let len = 1_000_000u64;
    srv.put("g", ObjectBody::Generated { seed: 5, len });
    let whole = generated(5, 0, len as usize);
    let url = srv.url("g");
    let resp = srv.get(&url, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        header(&resp, "content-range"),
        Some("bytes 1000-1999/1000000")
    );
    assert_eq!(header(&resp, "content-length"), Some("1000"));
    let crc = crc64(&whole).to_string();
    assert_eq!(header(&resp, "x-cos-hash-crc64ecma"), Some(crc.as_str()));
    assert_eq!(resp.bytes().await.unwrap(), &whole[1000..2000]);

    let resp = srv.get(&url, &[("range", "bytes=999990-")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        header(&resp, "content-range"),
        Some("bytes 999990-999999/1000000")
    );
    assert_eq!(resp.bytes().await.unwrap(), &whole[999_990..]);

    assert_eq!(
        srv.store.stats("g").ranges(),
        vec![Some("bytes=1000-1999".into()), Some("bytes=999990-".into())]
    );
}

#[tokio::test]
async fn head_returns_get_headers_without_body_but_a_get_url_cannot_sign_a_head() {
    let srv = Server::start().await;
    srv.put("h", ObjectBody::Bytes(Bytes::from_static(b"123456789")));
    let resp = srv.http.head(srv.url("h")).send().await.unwrap();
    assert_eq!(resp.status(), 403, "a GET-signed URL used for HEAD");

    let now = srv.clock.now().timestamp();
    let (head_url, _) = tcbackup::cos::presign_url(
        &tcbackup::cos::Presign {
            method: "HEAD",
            base_url: &srv.base,
            key: "h",
            secret_id: SECRET_ID,
            start: now - 60,
            end: now + 600,
            params: &[],
            sign_host: true,
            shape: UrlShape::Wrapped,
        },
        SECRET_KEY,
    );
    let resp = srv.http.head(&head_url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length"), Some("9"));
    assert_eq!(
        header(&resp, "x-cos-hash-crc64ecma"),
        Some("11051210869376104954")
    );
    assert!(header(&resp, "etag").is_some());
    assert!(resp.bytes().await.unwrap().is_empty());
    // The HEAD-signed URL is refused for GET in turn, with the XML error.
    let (status, code, _) = xml_code(srv.get(&head_url, &[]).await).await;
    assert_eq!((status, code.as_str()), (403, "SignatureDoesNotMatch"));
    assert_eq!(srv.store.stats("h").statuses(), vec![403, 200, 403]);
    assert_eq!(srv.store.stats("h").bytes_served, 0);
}

#[tokio::test]
async fn wrong_signature_and_unknown_key_id_are_refused_with_xml() {
    let srv = Server::start().await;
    srv.put("k", ObjectBody::Bytes(Bytes::from_static(b"x")));
    let url = srv.url("k");
    let pos = url.find("q-signature=").unwrap() + "q-signature=".len();
    let mut tampered = url.clone();
    let flipped = if &url[pos..pos + 1] == "0" { "1" } else { "0" };
    tampered.replace_range(pos..pos + 1, flipped);
    let (status, code, _) = xml_code(srv.get(&tampered, &[]).await).await;
    assert_eq!((status, code.as_str()), (403, "SignatureDoesNotMatch"));

    let other = url.replace("/k?", "/other?");
    srv.put("other", ObjectBody::Bytes(Bytes::from_static(b"y")));
    let (status, code, _) = xml_code(srv.get(&other, &[]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "SignatureDoesNotMatch"),
        "signature covers the path"
    );

    let foreign = url.replace(SECRET_ID, "AKIDsomeoneElse");
    let (status, code, _) = xml_code(srv.get(&foreign, &[]).await).await;
    assert_eq!((status, code.as_str()), (403, "InvalidAccessKeyId"));

    let unsigned = format!("{}/k", srv.base);
    let (status, code, _) = xml_code(srv.get(&unsigned, &[]).await).await;
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));

    let missing = srv.url("missing");
    let (status, code, _) = xml_code(srv.get(&missing, &[]).await).await;
    assert_eq!((status, code.as_str()), (404, "NoSuchKey"));
}

#[tokio::test]
async fn expired_url_gets_access_denied_request_has_expired() {
    let srv = Server::start().await;
    srv.put("k", ObjectBody::Bytes(Bytes::from_static(b"abc")));
    for shape in [UrlShape::TopLevel, UrlShape::Wrapped] {
        let url = srv.store.presign(&srv.base, "k", 300, shape);
        srv.clock.advance(Duration::seconds(300));
        assert_eq!(
            srv.get(&url, &[]).await.status(),
            200,
            "valid through its last second"
        );
        srv.clock.advance(Duration::seconds(1));
        let (status, code, message) = xml_code(srv.get(&url, &[]).await).await;
        assert_eq!(
            (status, code.as_str(), message.as_str()),
            (403, "AccessDenied", "Request has expired"),
            "{shape:?}"
        );
    }
}

#[tokio::test]
async fn cut_fault_closes_the_connection_before_content_length_then_clears() {
    let srv = Server::start().await;
    srv.put(
        "c",
        ObjectBody::Generated {
            seed: 3,
            len: 1 << 20,
        },
    );
    srv.store.add_fault(
        FaultTarget::Key("c".into()),
        Fault::CutAfter(1000),
        Repeat::Times(1),
    );
    let url = srv.url("c");
    let resp = srv.get(&url, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length"), Some("1048576"));
    let err = resp.bytes().await.expect_err("body must be cut short");
    assert!(err.is_body() || err.is_decode(), "{err:?}");
    assert_eq!(srv.store.stats("c").bytes_served, 1000);
    assert_eq!(srv.store.pending_faults(), 0);

    let resp = srv.get(&url, &[("range", "bytes=1000-")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.bytes().await.unwrap(),
        generated(3, 1000, (1 << 20) - 1000)
    );
}

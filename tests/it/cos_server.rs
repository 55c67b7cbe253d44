//! End-to-end behaviour of the fake COS server over real HTTP: presigned URL
//! checks in both shapes, expiry, Range/206/416, conditionals, the CRC-64
//! header, traffic limits and every switchable fault.

use std::sync::Arc;

use crate::common::fake_cos::FakeCos;
use bytes::Bytes;
use chrono::Duration;
use tcbackup_emulator::cos::{
    fill_generated, router, CosStore, Fault, FaultTarget, ObjectBody, ObjectOptions, Repeat,
    UrlShape,
};
use tcbackup_signing::clock::{Clock, ManualClock};

const SECRET_ID: &str = "AKIDcosTest";
const SECRET_KEY: &str = "cosTestSecretKey";

/// A fake COS and a client for it.
struct Server {
    cos: FakeCos,
    store: Arc<CosStore>,
    clock: ManualClock,
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        let cos = FakeCos::start(SECRET_ID, SECRET_KEY).await;
        Server {
            store: cos.store.clone(),
            clock: cos.clock.clone(),
            base: cos.base.clone(),
            http: reqwest::Client::new(),
            cos,
        }
    }

    fn put(&self, key: &str, body: ObjectBody) {
        self.cos.put(key, body);
    }

    fn url(&self, key: &str) -> String {
        self.cos.presign(key, 3600, UrlShape::TopLevel)
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
    let (head_url, _) = tcbackup_signing::cos::presign_url(
        &tcbackup_signing::cos::Presign {
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

#[tokio::test]
async fn range_past_the_end_is_416_and_multi_range_gets_the_whole_object() {
    let srv = Server::start().await;
    srv.put("r", ObjectBody::Bytes(Bytes::from_static(b"0123456789")));
    let url = srv.url("r");
    let resp = srv.get(&url, &[("range", "bytes=10-")]).await;
    assert_eq!(header(&resp, "content-range"), Some("bytes */10"));
    let (status, code, _) = xml_code(resp).await;
    assert_eq!((status, code.as_str()), (416, "InvalidRange"));

    let resp = srv.get(&url, &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-range"), None);
    assert_eq!(
        header(&resp, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(resp.bytes().await.unwrap(), &b"0123456789"[..]);

    let resp = srv.get(&url, &[("range", "bytes=-3")]).await;
    assert_eq!(header(&resp, "content-range"), Some("bytes 7-9/10"));
    assert_eq!(resp.bytes().await.unwrap(), &b"789"[..]);
}

#[tokio::test]
async fn if_match_guards_resume_and_if_none_match_gives_304() {
    let srv = Server::start().await;
    srv.put("m", ObjectBody::Bytes(Bytes::from_static(b"hello")));
    let url = srv.url("m");
    let etag = srv.store.info("m").unwrap().etag;

    let resp = srv
        .get(&url, &[("range", "bytes=2-"), ("if-match", &etag)])
        .await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap(), &b"llo"[..]);

    let (status, code, _) = xml_code(
        srv.get(&url, &[("range", "bytes=2-"), ("if-match", "\"0000\"")])
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (412, "PreconditionFailed"));

    let resp = srv.get(&url, &[("if-none-match", &etag)]).await;
    assert_eq!(resp.status(), 304);
    assert_eq!(header(&resp, "etag"), Some(etag.as_str()));
    let resp = srv.get(&url, &[("if-none-match", "\"0000\"")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(srv.store.stats("m").statuses(), vec![206, 412, 304, 200]);
}

#[tokio::test]
async fn crc_header_is_absent_for_legacy_objects() {
    let srv = Server::start().await;
    srv.store
        .put(
            "old",
            ObjectBody::Bytes(Bytes::from_static(b"123456789")),
            ObjectOptions {
                legacy_no_crc: true,
            },
        )
        .unwrap();
    let resp = srv.get(&srv.url("old"), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-cos-hash-crc64ecma"), None);
    assert_eq!(resp.bytes().await.unwrap(), &b"123456789"[..]);
}

#[tokio::test]
async fn file_objects_stream_from_disk_with_ranges() {
    let srv = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base.tar.gz");
    let content = generated(11, 0, 700_001);
    std::fs::write(&path, &content).unwrap();
    srv.put("pg/base.tar.gz", ObjectBody::File(path));
    let url = srv.url("pg/base.tar.gz");
    let resp = srv.get(&url, &[]).await;
    let crc = crc64(&content).to_string();
    assert_eq!(header(&resp, "x-cos-hash-crc64ecma"), Some(crc.as_str()));
    assert_eq!(resp.bytes().await.unwrap(), content);
    let resp = srv.get(&url, &[("range", "bytes=300000-600000")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap(), &content[300_000..=600_000]);
}

#[tokio::test]
async fn generated_objects_are_reproducible_at_any_offset() {
    let srv = Server::start().await;
    let len = 3_000_017u64;
    srv.put("gen", ObjectBody::Generated { seed: 77, len });
    let url = srv.url("gen");
    let whole = srv.get(&url, &[]).await.bytes().await.unwrap();
    assert_eq!(whole.len() as u64, len);
    assert_eq!(whole, generated(77, 0, len as usize));
    for (first, last) in [
        (0u64, 0u64),
        (1, 8),
        (7, 300_000),
        (262_143, 262_145),
        (2_999_999, 3_000_016),
    ] {
        let range = format!("bytes={first}-{last}");
        let part = srv
            .get(&url, &[("range", &range)])
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(part, whole[first as usize..=last as usize], "{range}");
    }
    // Another store with the same seed serves the same bytes.
    let other = Server::start().await;
    other.put("gen", ObjectBody::Generated { seed: 77, len });
    let again = other
        .get(&other.url("gen"), &[("range", "bytes=123456-")])
        .await;
    assert_eq!(again.bytes().await.unwrap(), whole[123_456..]);
}

#[tokio::test]
async fn traffic_limit_outside_cos_bounds_is_400_and_inside_throttles() {
    let srv = Server::start().await;
    srv.put(
        "t",
        ObjectBody::Generated {
            seed: 2,
            len: 64 * 1024,
        },
    );
    let url = srv.url("t");
    for bad in ["819199", "838860801", "fast"] {
        let (status, code, _) =
            xml_code(srv.get(&url, &[("x-cos-traffic-limit", bad)]).await).await;
        assert_eq!((status, code.as_str()), (400, "InvalidArgument"), "{bad}");
    }
    let (status, _, _) = xml_code(
        srv.get(&format!("{url}&x-cos-traffic-limit=100"), &[])
            .await,
    )
    .await;
    assert_eq!(status, 400, "query parameter form is checked too");

    // 819200 bit/s = 100 KiB/s: 64 KiB cannot arrive in less than ~0.45 s.
    let started = std::time::Instant::now();
    let resp = srv.get(&url, &[("x-cos-traffic-limit", "819200")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 64 * 1024);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(450),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn url_expiring_mid_download_keeps_streaming_but_the_next_request_is_refused() {
    let srv = Server::start().await;
    let len = 8u64 << 20;
    srv.put("big", ObjectBody::Generated { seed: 8, len });
    let url = srv.store.presign(&srv.base, "big", 60, UrlShape::Wrapped);
    // Hold the response after its first MiB so it is certainly mid-stream.
    srv.store.add_fault(
        FaultTarget::Key("big".into()),
        Fault::StallAfter(1 << 20),
        Repeat::Times(1),
    );
    let mut resp = srv.get(&url, &[]).await;
    assert_eq!(resp.status(), 200);
    let mut got = Vec::with_capacity(len as usize);
    while got.len() < 1 << 20 {
        got.extend_from_slice(&resp.chunk().await.unwrap().unwrap());
    }
    srv.clock.advance(Duration::seconds(3600));
    srv.store.release_stalls();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got.len() as u64, len);
    assert_eq!(crc64(&got), srv.store.crc64("big").await.unwrap());

    let resume = format!("bytes={len}-");
    let (status, code, message) = xml_code(srv.get(&url, &[("range", &resume)]).await).await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (403, "AccessDenied", "Request has expired")
    );
}

#[tokio::test]
async fn server_error_and_deny_faults_answer_xml_for_the_next_n_requests() {
    let srv = Server::start().await;
    srv.put("e", ObjectBody::Bytes(Bytes::from_static(b"ok")));
    srv.put("other", ObjectBody::Bytes(Bytes::from_static(b"ok")));
    let url = srv.url("e");
    srv.store.add_fault(
        FaultTarget::Key("e".into()),
        Fault::ServerError(503),
        Repeat::Times(1),
    );
    srv.store.add_fault(
        FaultTarget::Key("e".into()),
        Fault::ServerError(500),
        Repeat::Times(1),
    );
    srv.store
        .add_fault(FaultTarget::AnyKey, Fault::Deny, Repeat::Times(2));

    let (status, code, _) = xml_code(srv.get(&url, &[]).await).await;
    assert_eq!((status, code.as_str()), (503, "ServiceUnavailable"));
    let (status, code, _) = xml_code(srv.get(&url, &[]).await).await;
    assert_eq!((status, code.as_str()), (500, "InternalError"));
    let (status, code, _) = xml_code(srv.get(&url, &[]).await).await;
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));
    let (status, code, _) = xml_code(srv.get(&srv.url("other"), &[]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "AccessDenied"),
        "AnyKey reaches other keys"
    );
    let resp = srv.get(&url, &[]).await;
    assert_eq!(resp.status(), 200, "all faults used up");
    assert_eq!(resp.bytes().await.unwrap(), &b"ok"[..]);
    assert_eq!(srv.store.pending_faults(), 0);
    assert_eq!(srv.store.stats("e").statuses(), vec![503, 500, 403, 200]);
}

#[tokio::test]
async fn ignore_range_fault_answers_200_with_the_whole_body() {
    let srv = Server::start().await;
    srv.put("i", ObjectBody::Bytes(Bytes::from_static(b"0123456789")));
    let url = srv.url("i");
    srv.store
        .add_fault(FaultTarget::AnyKey, Fault::IgnoreRange, Repeat::Times(1));
    let resp = srv.get(&url, &[("range", "bytes=4-")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-range"), None);
    assert_eq!(resp.bytes().await.unwrap(), &b"0123456789"[..]);
    let resp = srv.get(&url, &[("range", "bytes=4-")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap(), &b"456789"[..]);
}

#[tokio::test]
async fn stall_fault_sends_headers_and_some_bytes_then_nothing() {
    let srv = Server::start().await;
    srv.put(
        "s",
        ObjectBody::Generated {
            seed: 4,
            len: 100_000,
        },
    );
    srv.store.add_fault(
        FaultTarget::Key("s".into()),
        Fault::StallAfter(5000),
        Repeat::Times(1),
    );
    let mut resp = srv.get(&srv.url("s"), &[]).await;
    assert_eq!(resp.status(), 200);
    let mut got = Vec::new();
    while got.len() < 5000 {
        got.extend_from_slice(&resp.chunk().await.unwrap().unwrap());
    }
    assert_eq!(got.len(), 5000);
    // A client with a 200 ms read timeout gives up here.
    let waited = tokio::time::timeout(std::time::Duration::from_millis(200), resp.chunk()).await;
    assert!(waited.is_err(), "no byte may arrive while stalled");
    assert_eq!(srv.store.stats("s").bytes_served, 5000);
    drop(resp);
    // The fault was used once: the next request streams normally.
    let body = srv.get(&srv.url("s"), &[]).await.bytes().await.unwrap();
    assert_eq!(body, generated(4, 0, 100_000));
}

#[tokio::test]
async fn replace_fault_changes_the_object_mid_download_for_the_next_request() {
    let srv = Server::start().await;
    let len = 2u64 << 20;
    srv.put("x", ObjectBody::Generated { seed: 1, len });
    let old_etag = srv.store.info("x").unwrap().etag;
    srv.store.add_fault(
        FaultTarget::Key("x".into()),
        Fault::ReplaceAfter {
            after_bytes: 1 << 20,
            body: ObjectBody::Generated { seed: 2, len },
        },
        Repeat::Times(1),
    );
    let url = srv.url("x");
    let resp = srv.get(&url, &[]).await;
    assert_eq!(header(&resp, "etag"), Some(old_etag.as_str()));
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        body,
        generated(1, 0, len as usize),
        "the running response keeps the old bytes"
    );

    let new_etag = srv.store.info("x").unwrap().etag;
    assert_ne!(new_etag, old_etag);
    let (status, code, _) = xml_code(
        srv.get(&url, &[("range", "bytes=100-"), ("if-match", &old_etag)])
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (412, "PreconditionFailed"));
    let resp = srv.get(&url, &[("range", "bytes=100-199")]).await;
    assert_eq!(header(&resp, "etag"), Some(new_etag.as_str()));
    assert_eq!(resp.bytes().await.unwrap(), generated(2, 100, 100));
}

#[tokio::test]
async fn server_wide_rate_cap_applies_per_connection() {
    let srv = Server::start().await;
    srv.put(
        "slow",
        ObjectBody::Generated {
            seed: 6,
            len: 512 * 1024,
        },
    );
    srv.store.set_rate_limit(Some(1 << 20));
    assert_eq!(srv.store.rate_limit(), Some(1 << 20));
    let url = srv.url("slow");
    // Two connections at once, each held to the cap: 512 KiB at 1 MiB/s in
    // 128 KiB chunks cannot finish before the fourth chunk is due (0.375 s).
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(
        async { srv.get(&url, &[]).await.bytes().await.unwrap() },
        async {
            reqwest::Client::new()
                .get(&url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        },
    );
    let elapsed = started.elapsed();
    assert_eq!(a.len(), 512 * 1024);
    assert_eq!(a, b);
    assert!(
        elapsed >= std::time::Duration::from_millis(370),
        "{elapsed:?}"
    );

    srv.store.set_rate_limit(None);
    srv.store.add_fault(
        FaultTarget::Key("slow".into()),
        Fault::Slow(1 << 20),
        Repeat::Times(1),
    );
    let started = std::time::Instant::now();
    let body = srv.get(&url, &[]).await.bytes().await.unwrap();
    assert_eq!(body.len(), 512 * 1024);
    assert!(started.elapsed() >= std::time::Duration::from_millis(370));
}

#[tokio::test]
async fn router_merges_with_the_api_routes_which_keep_their_paths() {
    let clock = ManualClock::new();
    let store = CosStore::new(Arc::new(clock), SECRET_ID, SECRET_KEY);
    store
        .put(
            "k",
            ObjectBody::Bytes(Bytes::from_static(b"v")),
            ObjectOptions::default(),
        )
        .unwrap();
    let api = axum::Router::new()
        .route("/", axum::routing::post(|| async { "api" }))
        .route(
            "/latest/meta-data/cam/security-credentials/",
            axum::routing::get(|| async { "role" }),
        );
    let app = api.merge(router(Arc::clone(&store)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let text = |r: reqwest::Response| async move { r.text().await.unwrap() };
    assert_eq!(
        text(http.post(format!("{base}/")).send().await.unwrap()).await,
        "api"
    );
    assert_eq!(
        text(
            http.get(format!("{base}/latest/meta-data/cam/security-credentials/"))
                .send()
                .await
                .unwrap()
        )
        .await,
        "role"
    );
    let resp = http
        .get(format!("{base}/latest/meta-data/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let url = store.presign(&base, "k", 60, UrlShape::TopLevel);
    assert_eq!(text(http.get(&url).send().await.unwrap()).await, "v");
}

#[tokio::test]
async fn temporary_key_urls_need_their_token_until_it_expires() {
    let srv = Server::start().await;
    srv.put(
        "pg/base.tar.zst",
        ObjectBody::Bytes(Bytes::from_static(b"pg")),
    );
    let expires = srv.clock.now().timestamp() + 1800;
    srv.store
        .add_temporary_key("AKIDtmp", "tmpKey", "tok+en/1", expires);
    assert_eq!(
        srv.store
            .presign_temporary(&srv.base, "k", 60, UrlShape::TopLevel, "AKIDnone"),
        None
    );
    let url = srv
        .store
        .presign_temporary(
            &srv.base,
            "pg/base.tar.zst",
            43_200,
            UrlShape::TopLevel,
            "AKIDtmp",
        )
        .unwrap();
    assert!(
        url.contains("q-url-param-list=x-cos-security-token&"),
        "{url}"
    );
    assert!(url.ends_with("&x-cos-security-token=tok%2Ben%2F1"), "{url}");
    let resp = srv.get(&url, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), &b"pg"[..]);

    let without = url.replace("&x-cos-security-token=tok%2Ben%2F1", "");
    let (status, code, _) = xml_code(srv.get(&without, &[]).await).await;
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));
    let wrong = url.replace("tok%2Ben%2F1", "tok%2Ben%2F2");
    let (status, _, _) = xml_code(srv.get(&wrong, &[]).await).await;
    assert_eq!(status, 403);

    srv.clock.advance(Duration::seconds(1801));
    let (status, code, _) = xml_code(srv.get(&url, &[]).await).await;
    assert_eq!((status, code.as_str()), (400, "ExpiredToken"));
}

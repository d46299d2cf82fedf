//! The limit phase as the request path runs it (`proxy::limits::limit`), side by side: a principal
//! without limits (one `Option` test), one with a rate limit, one with rate + MaxConcurrent + a
//! daily quota (all admitted, the permit dropped as a finished request drops it), and a refusal.
//! Each includes building the RateLimit-Policy / RateLimit values a response gets.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use scangate::auth::principal::Principal;
use scangate::auth::store::Lookup;
use scangate::auth::token::TokenKey;
use scangate::proxy::limits::limit;
use scangate::state::Gateway;

const KEY: [u8; 32] = [7; 32];

fn principal(gw: &Gateway, key: &TokenKey, token: &str) -> Principal {
    match gw.tokens.lookup(&key.digest(token.as_bytes())) {
        Lookup::Valid(record) => Principal::Token(record),
        _ => panic!("{token} is not valid"),
    }
}

fn limits(c: &mut Criterion) {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let key = TokenKey::from_bytes(&KEY);
    let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
    std::fs::write(dir.path().join("scangate.key"), format!("{b64}\n")).unwrap();
    let token = |name: &str, limit: &str| {
        format!(
            "<Token><Name>{name}</Name><Value>{}</Value><Enabled>1</Enabled>{limit}</Token>",
            key.value(name)
        )
    };
    let huge = "<RequestsPerSecond>1000000</RequestsPerSecond><Burst>1000000</Burst>";
    let tokens = [
        token("Free-1a", ""),
        token("Rate-1a", &format!("<RateLimit>{huge}</RateLimit>")),
        token(
            "All-1a",
            &format!(
                "<RateLimit>{huge}<MaxConcurrent>1000</MaxConcurrent>\
                 <DailyQuota>1000000000000</DailyQuota></RateLimit>"
            ),
        ),
        token(
            "Refused-1a",
            "<RateLimit><RequestsPerSecond>1</RequestsPerSecond></RateLimit>",
        ),
    ]
    .concat();
    let xml = format!(
        "<Configuration><ServerSettings><ConnectionString>http://127.0.0.1:1</ConnectionString>\
         <AuthSettings><UseAccessToken>1</UseAccessToken><AuthRequestField>Authorization</AuthRequestField>\
         <UseBearerAuthScheme>1</UseBearerAuthScheme><AccessTokens>{tokens}</AccessTokens></AuthSettings>\
         </ServerSettings><GatewaySettings><Upstreams><Upstream>http://127.0.0.1:9</Upstream></Upstreams>\
         <AdminConnectionString>off</AdminConnectionString></GatewaySettings></Configuration>"
    );
    let path = dir.path().join("scangate.xml");
    std::fs::write(&path, xml).unwrap();
    let gw = Gateway::start(&path).unwrap();

    let mut g = c.benchmark_group("limit_phase");
    for name in ["Free-1a", "Rate-1a", "All-1a", "Refused-1a"] {
        let p = principal(&gw, &key, name);
        if name == "Refused-1a" {
            let mut headers = None;
            let _ = limit(&gw, &p, &mut headers);
        }
        g.bench_function(name.trim_end_matches("-1a").to_lowercase(), |b| {
            b.iter(|| {
                let mut headers = None;
                let admitted = limit(&gw, black_box(&p), &mut headers);
                black_box((admitted.is_ok(), headers.is_some()))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, limits);
criterion_main!(benches);

//! Parsing and validating a 100k-token config: the bulk of a reload's cost.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use scangate::auth::token::encode_value;
use scangate::config::validate::parse;

mod common;

/// A config shaped like `config/` examples, with `n` tokens.
fn config(n: usize) -> String {
    let mut tokens = String::with_capacity(n * 160);
    for (i, d) in common::digests(n).iter().enumerate() {
        tokens.push_str(&format!(
            "        <Token><Name>client-{i}</Name><Value>{}</Value><Enabled>1</Enabled></Token>\n",
            encode_value(d)
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Configuration>
  <ServerSettings>
    <ConnectionString>http://127.0.0.1:8080</ConnectionString>
    <AuthSettings>
      <UseAccessToken>1</UseAccessToken>
      <AuthRequestField>Authorization</AuthRequestField>
      <UseBearerAuthScheme>1</UseBearerAuthScheme>
      <AccessTokens>
{tokens}      </AccessTokens>
    </AuthSettings>
  </ServerSettings>
  <GatewaySettings>
    <Upstreams><Upstream>http://127.0.0.1:9999</Upstream></Upstreams>
    <TokenKeyFile>scangate.key</TokenKeyFile>
  </GatewaySettings>
</Configuration>
"#
    )
}

fn parsing(c: &mut Criterion) {
    let text = config(100_000);
    if let Err(e) = parse(&text, "bench.xml") {
        eprintln!("parse/100k_tokens skipped: the config does not parse: {e}");
        return;
    }
    let mut g = c.benchmark_group("parse");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("100k_tokens", |b| {
        b.iter(|| parse(black_box(&text), "bench.xml"))
    });
    g.finish();
}

criterion_group!(benches, parsing);
criterion_main!(benches);

//! The scan audit's work per scan call (issue 18), to set against a request's whole cost: finding
//! the scan call, reading the verdict from the answer (one frame, or a long archive answer in
//! frames), and counting it (the token's result counter and its getstatistics counters).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use scangate::audit::{ScanCall, ScanCounters, Sniffer};
use scangate::metrics::Metrics;

const CLEAN: &[u8] = br#"{"object":"memory","scanResult":"CLEAN"}"#;
const DETECT: &[u8] =
    br#"{"object":"memory","scanResult":"DETECT","detectionName":"EICAR-Test-File","containsOfficeMacro":"false"}"#;

/// What one audited answer costs: the path check, the sniffer (boxed, as it rides on the body),
/// one frame, the verdict and the counters.
fn audited(
    path: &str,
    frames: &[&[u8]],
    metrics: &scangate::metrics::TokenMeter,
    counters: &ScanCounters,
) {
    let Some(call) = ScanCall::of(path) else {
        return;
    };
    let mut sniffer = Box::new(Sniffer::new(call.wire()));
    for frame in frames {
        if sniffer.feed(frame) {
            break;
        }
    }
    let verdict = sniffer.verdict(true);
    metrics.scan_result(verdict.result);
    counters.record(call.op, verdict.result, 5);
    black_box(verdict);
}

fn audit(c: &mut Criterion) {
    let m = Metrics::new();
    let meter = m.token_meter("bench");
    let counters = ScanCounters::default();
    let mut g = c.benchmark_group("audit");
    g.bench_function("not_a_scan_call", |b| {
        b.iter(|| black_box(ScanCall::of(black_box("/api/v3.0/getstatistics"))))
    });
    g.bench_function("clean_v3", |b| {
        b.iter(|| audited("/api/v3.0/scanmemory", &[CLEAN], &meter, &counters))
    });
    g.bench_function("detect_v3", |b| {
        b.iter(|| audited("/api/v3.0/scanmemory", &[DETECT], &meter, &counters))
    });
    g.bench_function("clean_v1", |b| {
        b.iter(|| audited("/scanmemory", &[b"CLEAN"], &meter, &counters))
    });
    // An archive's answer: the verdict and 1 MiB of sub-objects in 16 KiB frames; only the first
    // 8 KiB are copied.
    let subs: Vec<String> = (0..25_000)
        .map(|i| format!(r#"{{"object":"/a.tar//f{i}","scanResult":"CLEAN"}}"#))
        .collect();
    let archive = format!(
        r#"{{"object":"/a.tar","scanResult":"DETECT","detectionName":"multiple","subObjectsScanResults":[{}]}}"#,
        subs.join(",")
    );
    let frames: Vec<&[u8]> = archive.as_bytes().chunks(16 * 1024).collect();
    g.bench_function("archive_1mib_v3", |b| {
        b.iter(|| audited("/api/v3.0/scanfile", &frames, &meter, &counters))
    });
    g.finish();
}

criterion_group!(benches, audit);
criterion_main!(benches);

//! `GatewaySettings/Audit`: the scan audit's switches (see [`AuditSettings`]).

use super::{join, Ctx, Group, Unknown};
use crate::config::xml::Element;
use crate::config::AuditSettings;

const KNOWN: &[&str] = &[
    "Enabled",
    "LogNonScanned",
    "RedactObjects",
    "GatewayStatistics",
    "RecentDetections",
];

/// The most detections the console may keep: about 1 KiB each, so 100 MiB at worst.
const MAX_RECENT: u64 = 100_000;

/// `Audit`, with defaults for what is absent (and for all of it when there is no element).
pub(super) fn audit(ctx: &mut Ctx, el: Option<&Element<'_>>, parent: &str) -> AuditSettings {
    let mut a = AuditSettings::default();
    let Some(el) = el else {
        return a;
    };
    let g = Group::new(ctx, el, join(parent, "Audit"), KNOWN, Unknown::Reject);
    a.enabled = g.flag(ctx, "Enabled").unwrap_or(a.enabled);
    a.log_non_scanned = g.flag(ctx, "LogNonScanned").unwrap_or(a.log_non_scanned);
    a.redact_objects = g.flag(ctx, "RedactObjects").unwrap_or(a.redact_objects);
    a.gateway_statistics = (g.flag(ctx, "GatewayStatistics")).unwrap_or(a.gateway_statistics);
    if let Some(n) = g.uint(ctx, "RecentDetections", MAX_RECENT) {
        a.recent_detections = n as usize;
    }
    if a.gateway_statistics && !a.enabled {
        if let Some(leaf) = g.leaf(ctx, "GatewayStatistics") {
            let rule = "GatewayStatistics needs Enabled 1: the statistics are counted from the \
                        verdicts the audit reads";
            ctx.bad(&leaf, rule);
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use crate::config::validate::parse;
    use crate::config::AuditSettings;

    fn file(audit: &str) -> String {
        format!(
            "<Configuration>\n<ServerSettings><ConnectionString>http://127.0.0.1:8080</ConnectionString></ServerSettings>\n\
             <GatewaySettings><Upstreams><Upstream>http://127.0.0.1:9999</Upstream></Upstreams>\n{audit}</GatewaySettings>\n</Configuration>\n"
        )
    }

    fn errors(audit: &str) -> Vec<String> {
        match parse(&file(audit), "t.xml") {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn settings(audit: &str) -> AuditSettings {
        parse(&file(audit), "t.xml").unwrap().gateway.audit
    }

    #[test]
    fn defaults_read_verdicts_and_keep_the_engine_statistics() {
        let expected = AuditSettings {
            enabled: true,
            log_non_scanned: false,
            redact_objects: false,
            gateway_statistics: false,
            recent_detections: 1000,
        };
        assert_eq!(settings(""), expected);
        assert_eq!(settings("<Audit/>"), expected);
        assert_eq!(
            settings(
                "<Audit><Enabled>1</Enabled><LogNonScanned>1</LogNonScanned>\
                 <RedactObjects>1</RedactObjects><GatewayStatistics>1</GatewayStatistics>\
                 <RecentDetections>0</RecentDetections></Audit>"
            ),
            AuditSettings {
                enabled: true,
                log_non_scanned: true,
                redact_objects: true,
                gateway_statistics: true,
                recent_detections: 0,
            }
        );
        assert!(!settings("<Audit><Enabled>0</Enabled></Audit>").enabled);
    }

    #[test]
    fn bad_values_are_refused_with_their_position() {
        assert_eq!(
            errors("<Audit><Enabled>yes</Enabled></Audit>"),
            ["t.xml:4:8: GatewaySettings/Audit/Enabled: Enabled must be 0 or 1, found \"yes\""]
        );
        assert_eq!(
            errors("<Audit>\n<RedactObjects>2</RedactObjects><LogNonScanned>-1</LogNonScanned></Audit>"),
            [
                "t.xml:5:1: GatewaySettings/Audit/RedactObjects: RedactObjects must be 0 or 1, found \"2\"",
                "t.xml:5:33: GatewaySettings/Audit/LogNonScanned: LogNonScanned must be 0 or 1, found \"-1\"",
            ]
        );
        assert_eq!(
            errors("<Audit><RecentDetections>100001</RecentDetections></Audit>"),
            ["t.xml:4:8: GatewaySettings/Audit/RecentDetections: RecentDetections must be a whole number from 0 to 100000, found \"100001\""]
        );
        assert_eq!(
            errors("<Audit><Enabled>0</Enabled><GatewayStatistics>1</GatewayStatistics></Audit>"),
            ["t.xml:4:28: GatewaySettings/Audit/GatewayStatistics: GatewayStatistics needs Enabled 1: the statistics are counted from the verdicts the audit reads"]
        );
        let unknown = errors("<Audit><Enable>1</Enable></Audit>");
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].starts_with("t.xml:4:8: GatewaySettings/Audit/Enable: "),
            "{unknown:?}"
        );
    }
}

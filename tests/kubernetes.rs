//! `deploy/kubernetes` renders with `kubectl kustomize` (no cluster needed) and every object has
//! what a scale-out deployment relies on: three replicas probed on the admin port, a drain that
//! SIGKILL cannot cut short, no root and no writable root filesystem, resource requests, the
//! config and key mounted as folders (so kubelet's swap reaches the pods and they reload), a
//! PodDisruptionBudget and a Redis the config points at. Skips without `kubectl` unless
//! `SCANGATE_REQUIRE_KUBECTL` is set.

use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// The rendered objects, or None when kubectl is missing (and not required).
fn rendered() -> Option<Vec<Value>> {
    let out = match Command::new("kubectl")
        .args([
            "kustomize",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes"),
        ])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            assert!(
                std::env::var_os("SCANGATE_REQUIRE_KUBECTL").is_none(),
                "kubectl cannot run ({e}) but SCANGATE_REQUIRE_KUBECTL is set"
            );
            eprintln!("SKIPPED: kubectl cannot run ({e}); set SCANGATE_REQUIRE_KUBECTL to fail");
            return None;
        }
    };
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect();
    Some(docs)
}

fn one<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn port_named(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_gateway_deployment_has_probes_drain_hardening_resources_and_folder_mounts() {
    let Some(objects) = rendered() else { return };
    let d = one(&objects, "Deployment", "scangate");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());

    // Probes on the admin port (9090, where the config binds AdminConnectionString).
    assert_eq!(port_named(c, "admin"), 9090);
    assert_eq!(port_named(c, "http"), 8080);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");

    // preStop + drain fit in the grace period.
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let drain: u64 = args[args.iter().position(|a| *a == "--drain-secs").unwrap() + 1]
        .parse()
        .unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        pre_stop > 0 && pre_stop + drain < grace,
        "{pre_stop} + {drain} vs {grace}"
    );

    // Config and key as whole folders from a ConfigMap and a Secret: no subPath, which would
    // never see kubelet's swap.
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        mounts.iter().all(|m| m.get("subPath").is_none()),
        "{mounts:?}"
    );
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };
    let config_mount = mounts.iter().find(|m| m["name"] == "config").unwrap();
    assert!(args.contains(&"/etc/scangate/scangate.xml"));
    assert_eq!(config_mount["mountPath"], "/etc/scangate");
    assert_eq!(volume("config")["configMap"]["name"], "scangate-config");
    assert_eq!(volume("key")["secret"]["secretName"], "scangate-key");
    // 0440: the gateway warns about a key file others may read.
    assert_eq!(volume("key")["secret"]["defaultMode"], 0o440);
}

#[test]
fn the_config_points_at_the_mounted_key_and_the_redis_the_base_runs() {
    let Some(objects) = rendered() else { return };
    // Fixed names: an edit is swapped into the pods rather than rolling them.
    let config = one(&objects, "ConfigMap", "scangate-config");
    let xml = config["data"]["scangate.xml"].as_str().unwrap();
    assert!(xml.contains("<TokenKeyFile>/etc/scangate-key/scangate.key</TokenKeyFile>"));
    assert!(xml.contains("<AdminConnectionString>0.0.0.0:9090</AdminConnectionString>"));
    assert!(xml.contains("<StateStore>redis://scangate-redis:6379/0</StateStore>"));
    let settings = scangate::config::validate::parse(xml, "scangate.xml").unwrap();
    assert_eq!(
        settings.gateway.sessions.state_store.to_string(),
        "redis://scangate-redis:6379/0"
    );
    assert!(one(&objects, "Secret", "scangate-key")["stringData"]["scangate.key"].is_string());

    let redis = one(&objects, "StatefulSet", "scangate-redis");
    let pod = &redis["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(c["resources"]["requests"]["memory"].is_string());
    let args = c["args"].to_string();
    assert!(args.contains(r#""--appendonly","yes""#), "{args}");
    assert!(redis["spec"]["volumeClaimTemplates"][0].is_object());
    let service = one(&objects, "Service", "scangate-redis");
    assert_eq!(service["spec"]["ports"][0]["port"], 6379);
    let policy = one(&objects, "NetworkPolicy", "scangate-redis");
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
            ["app.kubernetes.io/name"],
        "scangate"
    );
}

#[test]
fn the_service_and_the_disruption_budget_select_the_gateway_pods() {
    let Some(objects) = rendered() else { return };
    let labels = &one(&objects, "Deployment", "scangate")["spec"]["template"]["metadata"]["labels"];
    let service = one(&objects, "Service", "scangate");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let pdb = one(&objects, "PodDisruptionBudget", "scangate");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    for selector in [
        &service["spec"]["selector"],
        &pdb["spec"]["selector"]["matchLabels"],
    ] {
        for (k, v) in selector.as_object().unwrap() {
            assert_eq!(&labels[k], v, "{k}");
        }
    }
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
        "StatefulSet",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
}

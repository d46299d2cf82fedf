//! Every `config/*.xml` shipped as an example parses and validates, so an example can never drift
//! from what the parser accepts.

use std::path::Path;

use scangate::config::load::parse_at;
use scangate::config::ListenAddr;

#[test]
fn every_example_config_parses() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let label = path.display().to_string();
        let settings = parse_at(&text, &label, &folder).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !settings.auth.tokens.is_empty(),
            "{label}: an example without tokens shows nothing"
        );
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    // Guards against the loop passing over nothing (a moved folder, a renamed extension).
    assert_eq!(checked, ["kavhttpd-compatible.xml", "scangate.xml"]);
}

#[test]
fn scangate_xml_resolves_the_key_next_to_itself_and_listens_on_loopback() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = std::fs::read_to_string(folder.join("scangate.xml")).unwrap();
    let settings = parse_at(&text, "scangate.xml", &folder).unwrap();
    assert_eq!(
        settings.gateway.token_key_file,
        folder.join("scangate.key"),
        "the README's `serve --config config/scangate.xml` expects the key in config/"
    );
    assert_eq!(
        settings.server.listen,
        ListenAddr::Tcp {
            addr: "127.0.0.1:8080".parse().unwrap(),
            tls: false
        }
    );
    assert_eq!(
        settings.gateway.upstreams[0].to_string(),
        "http://127.0.0.1:9999"
    );
}

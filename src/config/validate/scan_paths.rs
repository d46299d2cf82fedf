//! `GatewaySettings/ScanningPaths`: where a `scanfile` object may lie (see `auth::scan_path`).
//! Named after the engine's own `DirectorySettings/ScanningPaths/ScanningPath`, so its list can be
//! copied over as is.

use std::path::PathBuf;

use super::{join, Ctx, Group, Unknown};
use crate::auth::scan_path::normalise;
use crate::config::xml::Element;

/// `ScanningPaths/ScanningPath`: absolute paths, each normalised. None at all is allowed and refuses
/// every `scanfile`.
pub(super) fn scanning_paths(ctx: &mut Ctx, el: &Element<'_>, parent: &str) -> Vec<PathBuf> {
    let g = Group::new(
        ctx,
        el,
        join(parent, "ScanningPaths"),
        &["ScanningPath"],
        Unknown::Reject,
    );
    let leaves = g.leaves(ctx, "ScanningPath");
    let checked = leaves.iter().map(|leaf| (leaf, normalise(leaf.text)));
    checked
        .filter_map(|(leaf, path)| {
            path.map_err(|rule| {
                let rule = format!("ScanningPath {rule}, found {:?}", leaf.text);
                ctx.bad(leaf, rule);
            })
            .ok()
        })
        .collect()
}

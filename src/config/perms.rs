//! Who may read the files the gateway reads: owner, group and mode.
//!
//! The gateway often runs as a service user while operators edit its config as themselves or as
//! root. A config or key file the service user cannot read makes every reload fail, so a token
//! that a `token disable` reported as disabled keeps working. Hence three rules:
//!
//! - A `token` edit gives the new file the old one's owner, group and mode as far as the editor
//!   may, and refuses when someone who could read the config could not read the new file
//!   ([`lost_reader`]).
//! - `check` judges the key and TLS files by who presumably runs the gateway
//!   ([`presumed_gateway`]): the config's owner, or the config's group when root owns it.
//! - A key file readable or writable by others is an error in `check` and a warning at start-up;
//!   group read is how a service user in the config's group reads it, so it is fine, but group
//!   write is a warning ([`key_exposure`]).

use std::fs::{File, Metadata};
use std::os::unix::fs::{fchown, MetadataExt};

/// A file's owner, group and permission bits: what decides who may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The owner's uid.
    pub uid: u32,
    /// The group's gid.
    pub gid: u32,
    /// The permission bits (`0o7777`).
    pub mode: u32,
}

/// Someone who reads a file, as the kernel tells them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// uid 0 reads any file.
    Root,
    /// A user and the groups it belongs to.
    User {
        /// Its uid.
        uid: u32,
        /// Its groups, primary and supplementary.
        groups: Vec<u32>,
    },
    /// Some member of this group that owns neither file: a service user known only by its group.
    GroupMember(u32),
}

impl Access {
    /// The owner, group and mode in `meta`.
    pub fn of(meta: &Metadata) -> Access {
        Access {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }
    }

    /// Whether `reader` may read the file. As in the kernel, the owner is judged by the owner bits
    /// alone, then a member of the file's group by the group bits, then everyone else by the
    /// others bits.
    pub fn readable_by(&self, reader: &Reader) -> bool {
        let bits = match reader {
            Reader::Root => return true,
            Reader::User { uid, .. } if *uid == self.uid => 0o400,
            Reader::User { groups, .. } if groups.contains(&self.gid) => 0o040,
            Reader::GroupMember(gid) if *gid == self.gid => 0o040,
            Reader::User { .. } | Reader::GroupMember(_) => 0o004,
        };
        self.mode & bits != 0
    }
}

impl std::fmt::Display for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reader::Root => f.write_str("root"),
            Reader::User { uid, .. } => write!(f, "uid {uid}"),
            Reader::GroupMember(gid) => write!(f, "group {gid}"),
        }
    }
}

/// Gives a new file `uid` and `gid` as far as this process may: root may set both, another user
/// only a group it belongs to. POSIX fails a `fchown` of both as a whole when the owner cannot
/// change, so the group is then tried alone. The caller reads the result back from the file.
pub fn copy_owner(file: &File, uid: u32, gid: u32) {
    if fchown(file, Some(uid), Some(gid)).is_err() {
        let _ = fchown(file, None, Some(gid));
    }
}

/// Who could read a file with `before`'s owner, group and mode but not one with `after`'s: its
/// owner (unless root, who reads anything), then a member of its group. `groups_of` lists a
/// uid's groups; an owner whose groups it does not know is taken to read through none.
pub fn lost_reader(
    before: Access,
    after: Access,
    groups_of: impl Fn(u32) -> Vec<u32>,
) -> Option<Reader> {
    let owner = Reader::User {
        uid: before.uid,
        groups: groups_of(before.uid),
    };
    let member = Reader::GroupMember(before.gid);
    let lost = |r: &Reader| before.readable_by(r) && !after.readable_by(r);
    if before.uid != 0 && lost(&owner) {
        return Some(owner);
    }
    lost(&member).then_some(member)
}

/// Who presumably runs the gateway that reads a config with `config`'s owner, group and mode: its
/// owner when that is not root (with the config's group among its own); a member of its group
/// when root owns it and shares it with a group other than root's (why else share it); else root.
pub fn presumed_gateway(config: Access, groups_of: impl Fn(u32) -> Vec<u32>) -> Reader {
    if config.uid != 0 {
        let mut groups = groups_of(config.uid);
        groups.push(config.gid);
        Reader::User {
            uid: config.uid,
            groups,
        }
    } else if config.gid != 0 && config.mode & 0o040 != 0 {
        Reader::GroupMember(config.gid)
    } else {
        Reader::Root
    }
}

/// The groups of `uid` as `/etc/passwd` and `/etc/group` list them: its primary group and every
/// group that names it as a member. Empty for a uid they do not list, such as a directory-service
/// user.
pub fn groups_of(uid: u32) -> Vec<u32> {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    groups_in(&read("/etc/passwd"), &read("/etc/group"), uid)
}

/// [`groups_of`] over the two files' texts.
fn groups_in(passwd: &str, group: &str, uid: u32) -> Vec<u32> {
    let fields = |line: &'_ str| -> Vec<String> { line.split(':').map(str::to_owned).collect() };
    let user = passwd.lines().map(fields).find(|f| {
        let uid_field = f.get(2).map(|s| s.parse::<u32>());
        f.len() >= 4 && uid_field == Some(Ok(uid))
    });
    let Some(user) = user else {
        return Vec::new();
    };
    let mut groups: Vec<u32> = user[3].parse().ok().into_iter().collect();
    for f in group.lines().map(fields).filter(|f| f.len() >= 4) {
        if f[3].split(',').any(|member| member == user[0]) {
            groups.extend(f[2].parse::<u32>().ok());
        }
    }
    groups
}

/// How far a key file's mode opens it beyond its owner and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyExposure {
    /// Others may read or write it (`mode & 0o007`): an error in `check`, a warning at start-up.
    Others,
    /// Its group may write it: any member can replace the key. A warning.
    GroupWrite,
}

/// The key file rule: owner and group may read it, nobody else may touch it, and only the owner
/// should write it.
pub fn key_exposure(mode: u32) -> Option<KeyExposure> {
    if mode & 0o007 != 0 {
        Some(KeyExposure::Others)
    } else if mode & 0o020 != 0 {
        Some(KeyExposure::GroupWrite)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(uid: u32, gid: u32, mode: u32) -> Access {
        Access { uid, gid, mode }
    }

    fn user(uid: u32, groups: &[u32]) -> Reader {
        Reader::User {
            uid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn readable_by_follows_the_kernel_classes() {
        let file = access(10, 20, 0o604);
        assert!(file.readable_by(&Reader::Root));
        assert!(file.readable_by(&user(10, &[])));
        // The owner class decides for the owner, even when the group or others bits would allow.
        assert!(!access(10, 20, 0o044).readable_by(&user(10, &[20])));
        assert!(!file.readable_by(&user(11, &[20])), "group class: no read");
        assert!(file.readable_by(&user(11, &[21])), "others class");
        assert!(access(10, 20, 0o040).readable_by(&user(11, &[30, 20])));
        assert!(access(10, 20, 0o040).readable_by(&Reader::GroupMember(20)));
        assert!(!access(10, 20, 0o040).readable_by(&Reader::GroupMember(21)));
        assert!(access(10, 20, 0o004).readable_by(&Reader::GroupMember(21)));
        assert!(!access(10, 20, 0o600).readable_by(&Reader::GroupMember(20)));
        assert!(
            !access(10, 20, 0o200).readable_by(&user(10, &[])),
            "write only"
        );
    }

    #[test]
    fn lost_reader_names_the_group_or_the_owner_that_could_no_longer_read() {
        let none = |_| Vec::new();
        // root:G 0660 edited by a member of G who could set only the group: nobody loses.
        let before = access(0, 23456, 0o660);
        assert_eq!(lost_reader(before, access(1000, 23456, 0o660), none), None);
        // … and who could not even set the group: group G loses it.
        assert_eq!(
            lost_reader(before, access(1000, 1000, 0o660), none),
            Some(Reader::GroupMember(23456))
        );
        // Others may read it anyway.
        assert_eq!(
            lost_reader(access(0, 5, 0o664), access(7, 7, 0o664), none),
            None
        );
        // Nothing changed: nothing lost, even for a mode nobody reads.
        assert_eq!(
            lost_reader(access(5, 5, 0o000), access(5, 5, 0o000), none),
            None
        );
        // A group that could not read never loses.
        assert_eq!(
            lost_reader(access(0, 5, 0o600), access(7, 7, 0o600), none),
            None
        );

        // The owner, a service user, reads through its group only if it belongs to it.
        let before = access(999, 23456, 0o640);
        let after = access(1000, 23456, 0o640);
        assert_eq!(lost_reader(before, after, none), Some(user(999, &[])));
        let member = |uid| if uid == 999 { vec![23456] } else { vec![] };
        assert_eq!(lost_reader(before, after, member), None);
        // An owner that could not read loses nothing.
        assert_eq!(
            lost_reader(access(999, 5, 0o040), access(7, 5, 0o040), none),
            None
        );
    }

    #[test]
    fn the_gateway_is_presumed_the_config_owner_or_its_group() {
        let groups = |uid| if uid == 999 { vec![999, 4] } else { vec![] };
        assert_eq!(
            presumed_gateway(access(999, 23456, 0o600), groups),
            user(999, &[999, 4, 23456])
        );
        assert_eq!(
            presumed_gateway(access(0, 23456, 0o640), groups),
            Reader::GroupMember(23456)
        );
        assert_eq!(
            presumed_gateway(access(0, 23456, 0o600), groups),
            Reader::Root
        );
        assert_eq!(presumed_gateway(access(0, 0, 0o640), groups), Reader::Root);
    }

    #[test]
    fn groups_come_from_passwd_and_group() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\n\
                      svc:x:999:998::/:/usr/sbin/nologin\n";
        let group =
            "root:x:0:\nscangate:x:23456:bob,alice\nshort:x\nwheel:x:10:alice\nalic:x:11:alic\n";
        assert_eq!(groups_in(passwd, group, 1000), [1000, 23456, 10]);
        assert_eq!(groups_in(passwd, group, 999), [998]);
        assert_eq!(groups_in(passwd, group, 4242), Vec::<u32>::new());
        assert_eq!(
            groups_in("x:x:1:notanumber:\n", group, 1),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn key_exposure_allows_group_read_only() {
        for (mode, exposure) in [
            (0o600, None),
            (0o640, None),
            (0o400, None),
            (0o660, Some(KeyExposure::GroupWrite)),
            (0o620, Some(KeyExposure::GroupWrite)),
            (0o644, Some(KeyExposure::Others)),
            (0o602, Some(KeyExposure::Others)),
            (0o601, Some(KeyExposure::Others)),
            (0o666, Some(KeyExposure::Others)),
        ] {
            assert_eq!(key_exposure(mode), exposure, "{mode:o}");
        }
    }
}

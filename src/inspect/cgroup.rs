//! Which container a process runs in, read from its cgroup path (`/proc/PID/cgroup`) the way the
//! runtimes name their cgroups, with no call to a runtime's API:
//!
//! | runtime | systemd driver | cgroupfs driver |
//! |---|---|---|
//! | Docker | `docker-<id>.scope` | `/docker/<id>` |
//! | containerd (CRI) | `cri-containerd-<id>.scope` | `/kubepods/.../<id>` |
//! | CRI-O | `crio-<id>.scope` (`crio-conmon-<id>.scope` is its monitor) | `/kubepods/.../crio-<id>` |
//! | Podman | `libpod-<id>.scope` | `/libpod_parent/libpod-<id>` |
//!
//! and Kubernetes pods: `kubepods[-<qos>].slice/kubepods-<qos>-pod<uid>.slice` (the UID with `_`
//! for `-`) or `/kubepods/<qos>/pod<uid>`; a pod directly under `kubepods` is Guaranteed.
//!
//! The text is untrusted (a process chooses its cgroup's name when it may create one): only ids of
//! 64 hexadecimal digits and UIDs of the usual 36 characters are taken. Pure.

use crate::model::records::Container;

/// The longest cgroup file read; a process in thousands of v1 hierarchies is still far below.
pub(crate) const MAX_CGROUP_BYTES: u64 = 64 * 1024;

/// The container named by any hierarchy of a `/proc/PID/cgroup` text (`ID:CONTROLLERS:PATH` lines;
/// v2 is `0::PATH`), if any.
pub(crate) fn container(text: &str) -> Option<Container> {
    // The unified (v2) line first, then v1 lines: a pod's path is the same in each.
    let lines = text.lines().filter_map(|line| {
        let mut fields = line.splitn(3, ':');
        let id = fields.next()?;
        Some((id == "0", fields.nth(1)?))
    });
    let (unified, v1): (Vec<_>, Vec<_>) = lines.partition(|(unified, _)| *unified);
    unified.into_iter().chain(v1).find_map(|(_, path)| from_path(path))
}

/// The container one cgroup path names.
pub(crate) fn from_path(path: &str) -> Option<Container> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (pod_uid, qos) = pod(&parts).unzip();
    let mut runtime_id = None;
    for (i, part) in parts.iter().enumerate() {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        let named = [
            ("cri-containerd-", "containerd"),
            ("crio-conmon-", ""),
            ("crio-", "cri-o"),
            ("docker-", "docker"),
            ("libpod-conmon-", ""),
            ("libpod-", "podman"),
        ]
        .iter()
        .find_map(|(prefix, runtime)| Some((*runtime, part.strip_prefix(prefix)?)));
        let found = match named {
            // A runtime's monitor process (conmon) is not the container.
            Some(("", _)) => None,
            Some((runtime, id)) if is_container_id(id) => Some((runtime, id)),
            Some(_) => None,
            // cgroupfs driver: `/docker/<id>`, or a bare id in a pod's cgroup.
            None if is_container_id(part) && (i > 0 && parts[i - 1] == "docker") => Some(("docker", part)),
            None if is_container_id(part) && pod_uid.is_some() => Some(("kubernetes", part)),
            None => None,
        };
        if found.is_some() {
            runtime_id = found;
        }
    }
    if runtime_id.is_none() && pod_uid.is_none() {
        return None;
    }
    let (runtime, id) = runtime_id.map_or(("kubernetes", None), |(runtime, id)| (runtime, Some(id.to_string())));
    Some(Container { runtime, short_id: id.as_ref().map(|id| id[..12].to_string()), id, pod_uid, qos })
}

fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The pod UID and QoS class of a path under `kubepods`, which the kubelet makes at the top of
/// the hierarchy (or under `kubelet.slice`, as kind nests it: `kubelet-kubepods.slice`). A
/// `kubepods` further down is someone's own cgroup (a delegated subtree), not a pod.
fn pod(parts: &[&str]) -> Option<(String, &'static str)> {
    let is_kubepods = |p: &str| matches!(p, "kubepods.slice" | "kubepods" | "kubelet-kubepods.slice");
    let top = match parts {
        [first, ..] if is_kubepods(first) => 0,
        [first, second, ..] if matches!(*first, "kubelet.slice" | "kubelet") && is_kubepods(second) => 1,
        _ => return None,
    };
    let mut qos = "guaranteed";
    for part in &parts[top + 1..] {
        let name = part.strip_suffix(".slice").unwrap_or(part);
        // systemd: kubepods-burstable.slice, kubepods-burstable-pod<uid>.slice, kubepods-pod<uid>.slice
        // (kind: kubelet-kubepods-...); cgroupfs: burstable, pod<uid>.
        let name = name.strip_prefix("kubelet-").unwrap_or(name);
        let name = name.strip_prefix("kubepods-").unwrap_or(name);
        for class in ["burstable", "besteffort"] {
            if name == class || name.starts_with(&format!("{class}-")) {
                qos = if class == "burstable" { "burstable" } else { "besteffort" };
            }
        }
        let name = name.strip_prefix("burstable-").or_else(|| name.strip_prefix("besteffort-")).unwrap_or(name);
        if let Some(uid) = name.strip_prefix("pod") {
            let uid = uid.replace('_', "-");
            if is_uid(&uid) {
                return Some((uid, qos));
            }
        }
    }
    None
}

/// `8-4-4-4-12` lower-case hex digits, or 32 without dashes (a static pod's UID is a hash).
fn is_uid(text: &str) -> bool {
    if text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return true;
    }
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4b0c2dbb8a1b66f1fd04c4d1d94b8d8c5ab9e0fa5a1e5a7c5f6e2d1c0b9a8f7e";
    const UID: &str = "5f1c3a52-8d3e-4b7f-9a61-0c2d3e4f5a6b";

    fn runtime_and_id(path: &str) -> Option<(&'static str, Option<String>)> {
        from_path(path).map(|c| (c.runtime, c.id))
    }

    #[test]
    fn docker_podman_and_cri_o_scopes_and_cgroupfs_paths() {
        for (path, runtime) in [
            (format!("/system.slice/docker-{ID}.scope"), "docker"),
            (format!("/docker/{ID}"), "docker"),
            (format!("/machine.slice/libpod-{ID}.scope"), "podman"),
            (format!("/machine.slice/libpod-{ID}.scope/container"), "podman"),
            (format!("/system.slice/crio-{ID}.scope"), "cri-o"),
        ] {
            assert_eq!(runtime_and_id(&path), Some((runtime, Some(ID.to_string()))), "{path}");
        }
        let docker = from_path(&format!("/docker/{ID}")).expect("docker");
        assert_eq!((docker.short_id.as_deref(), docker.label()), (Some("4b0c2dbb8a1b"), "docker 4b0c2dbb8a1b".into()));
    }

    #[test]
    fn kubernetes_pods_with_their_qos_class_under_either_driver() {
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        let c = from_path(&systemd).expect("pod");
        assert_eq!((c.runtime, c.pod_uid.as_deref(), c.qos), ("containerd", Some(UID), Some("burstable")));
        assert_eq!(c.label(), format!("pod {UID} burstable 4b0c2dbb8a1b"));

        let guaranteed = format!("/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope", UID.replace('-', "_"));
        let c = from_path(&guaranteed).expect("guaranteed pod");
        assert_eq!((c.runtime, c.qos), ("cri-o", Some("guaranteed")));

        let cgroupfs = format!("/kubepods/besteffort/pod{UID}/{ID}");
        let c = from_path(&cgroupfs).expect("cgroupfs pod");
        assert_eq!((c.runtime, c.id.as_deref(), c.qos), ("kubernetes", Some(ID), Some("besteffort")));

        let kind = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        let c = from_path(&kind).expect("kind's nesting");
        assert_eq!((c.runtime, c.pod_uid.as_deref(), c.qos), ("containerd", Some(UID), Some("besteffort")));
        let static_pod = from_path("/kubepods/burstable/pod0123456789abcdef0123456789abcdef").expect("static pod");
        assert_eq!(static_pod.pod_uid.as_deref(), Some("0123456789abcdef0123456789abcdef"));

        let pod_only = format!("/kubepods/burstable/pod{UID}");
        let c = from_path(&pod_only).expect("the pod's own cgroup");
        assert_eq!((c.id, c.pod_uid.as_deref()), (None, Some(UID)));
    }

    #[test]
    fn the_v2_line_wins_and_v1_lines_are_read_too() {
        let text = format!("12:pids:/docker/{ID}\n1:name=systemd:/\n0::/\n");
        assert_eq!(container(&text).map(|c| c.runtime), Some("docker"));
        let text = format!("0::/system.slice/libpod-{ID}.scope\n4:memory:/docker/{ID}\n");
        assert_eq!(container(&text).map(|c| c.runtime), Some("podman"));
        assert_eq!(container("0::/user.slice/user-1000.slice/session-2.scope\n"), None);
        assert_eq!(container("0::/\n"), None);
    }

    #[test]
    fn what_is_not_an_id_names_no_container() {
        for path in [
            "/system.slice/docker.service".to_string(),
            "/system.slice/docker-short.scope".into(),
            format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            format!("/system.slice/docker-{ID}0.scope"),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/system.slice/crio-conmon-{ID}.scope"),
            format!("/somewhere/{ID}"),
            "/kubepods/burstable/podnot-a-uid".into(),
            "/kubepods/burstable/pod\u{1b}[2J".into(),
            // A `kubepods` of one's own, deep in a delegated subtree, is not a pod.
            format!("/user.slice/user-1000.slice/kubepods/burstable/pod{UID}"),
        ] {
            assert_eq!(from_path(&path), None, "{path}");
        }
    }

    #[test]
    fn arbitrary_text_never_panics() {
        for text in ["", ":", "::", "0::/kubepods.slice/", "x:y:/docker/", "\u{0}\n\u{ffff}:::://"] {
            let _ = container(text);
        }
    }
}

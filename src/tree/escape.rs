//! Turning ref names and platform names from image metadata into safe paths.
//!
//! A ref is shown at the path users write it as (docs/layout.md): its `docker images` name
//! (`crate::refname::familiar`) with each `/` a directory level. Names come from files we did
//! not write, so only what cannot be a path component is escaped: NUL and control bytes become
//! `%XX`; a name with an empty, `.` or `..` component is shown as one component instead, its
//! `/` escaped as `%2F` (and a whole name `.`/`..`/empty as `%2E`/`%2E%2E`/`%00`).

/// Escapes `name` into a single path component.
pub fn escape_component(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned() + "00";
    }
    if name.bytes().all(|b| b == b'.') {
        return name.bytes().map(|_| "%2E").collect();
    }
    escape_bytes(name, true)
}

/// The path components a ref is shown at under `images/`, before collisions are resolved.
pub fn ref_path(name: &str) -> Vec<String> {
    let shown = crate::refname::familiar(name);
    let parts: Vec<&str> = shown.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return vec![escape_component(shown)];
    }
    parts.into_iter().map(|p| escape_bytes(p, false)).collect()
}

/// Control bytes (and `/` when `slash`) as `%XX`; everything else as it is.
fn escape_bytes(name: &str, slash: bool) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '/' if slash => out.push_str("%2F"),
            '\0'..='\x1f' | '\x7f' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        let cases = [
            ("busybox:latest", "busybox:latest"),
            ("docker.io/library/busybox:1", "docker.io%2Flibrary%2Fbusybox:1"),
            ("100%", "100%"),
            ("..", "%2E%2E"),
            (".", "%2E"),
            ("a\nb", "a%0Ab"),
            ("", "%00"),
        ];
        for (input, want) in cases {
            assert_eq!(escape_component(input), want, "{input:?}");
        }
    }

    #[test]
    fn ref_paths() {
        let cases: &[(&str, &[&str])] = &[
            ("docker.io/library/busybox:latest", &["busybox:latest"]),
            ("docker.io/myorg/myapp:2.0", &["myorg", "myapp:2.0"]),
            ("quay.io/org/img:1", &["quay.io", "org", "img:1"]),
            ("127.0.0.1:5000/app@sha256:ab", &["127.0.0.1:5000", "app@sha256:ab"]),
            ("v1", &["v1"]),
            ("a/../b", &["a%2F..%2Fb"]),
            ("/abs", &["%2Fabs"]),
            ("a//b", &["a%2F%2Fb"]),
            ("..", &["%2E%2E"]),
            ("x/\u{1b}[1m", &["x", "%1B[1m"]),
        ];
        for (name, want) in cases {
            assert_eq!(ref_path(name), *want, "{name:?}");
        }
    }
}

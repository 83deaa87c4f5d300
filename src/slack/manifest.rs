//! The Slack app manifest shipped in `manifests/slack-app.yaml`, read at compile time, so that
//! `doctor` compares the granted scopes with exactly what the manifest asks for.

const MANIFEST: &str = include_str!("../../manifests/slack-app.yaml");

/// The bot scopes of the manifest (`oauth_config.scopes.bot`), in its order.
///
/// Own code rather than a YAML crate: this reads one list from one file we ship, and a test
/// below pins the result; a YAML dependency for that would be all cost.
pub fn bot_scopes() -> Vec<&'static str> {
    let mut lines = MANIFEST.lines().skip_while(|l| l.trim() != "oauth_config:");
    let mut in_scopes = false;
    let mut scopes = Vec::new();
    for line in lines.by_ref().skip(1) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        if trimmed == "bot:" {
            in_scopes = true;
        } else if let Some(scope) = trimmed.strip_prefix("- ").filter(|_| in_scopes) {
            scopes.push(scope.trim());
        } else if in_scopes {
            break;
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_manifests_bot_scopes_are_read_in_order() {
        assert_eq!(
            super::bot_scopes(),
            [
                "commands",
                "chat:write",
                "app_mentions:read",
                "files:write",
                "im:write",
                "usergroups:read"
            ]
        );
    }
}

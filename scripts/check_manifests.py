"""Consistency checks of the packaging, run by scripts/check-manifests.sh.

usage: check_manifests.py RENDERED_K8S_YAML [RENDERED_WITH_SEPARATE_REFRESHER_YAML]

Checks that the Slack app manifests, the rendered Kubernetes base, the Dockerfile and the Rust
sources agree on what docs/reference.md fixes: the command, the message shortcut, the /slack/* routes, the bot scopes and
events, the Home tab, the port, the probes and the non-root user; and, given the base rendered
with the component manifests/k8s/separate-refresher, that its refresher Deployment runs
`refresh --watch` with the bot's configuration and the bot runs none. Prints one line per check;
exits 1 if one failed. Routes missing from src/ are reported but fail only with
CHECK_MANIFESTS_REQUIRE_ROUTES=1 (while `serve` is being written).
"""

import os
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

COMMAND = "/crm-username"
SCOPES = {"commands", "chat:write", "app_mentions:read", "files:write", "im:write", "usergroups:read"}
EVENTS = ["app_mention", "app_home_opened"]
SHORTCUT = {"type": "message", "callback_id": "check_crm_username"}
SLACK_ROUTES = {
    "slash command": "/slack/commands",
    "interactivity": "/slack/interactions",
    "events": "/slack/events",
}
PROBE_ROUTES = ["/healthz", "/readyz", "/metrics"]

failures = 0


def check(ok, what, detail=""):
    global failures
    print(f"  {'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail and not ok else ''}")
    if not ok:
        failures += 1


def slack_manifest(path, socket_mode):
    print(f"-- {path}")
    try:
        app = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        check(False, "parses as YAML", str(e))
        return
    check(isinstance(app, dict), "parses as a YAML mapping")
    if not isinstance(app, dict):
        return
    features = app.get("features") or {}
    settings = app.get("settings") or {}
    check(bool((app.get("display_information") or {}).get("name")), "display_information.name is set")
    check("bot_user" in features, "features.bot_user is present")

    commands = [c for c in features.get("slash_commands") or [] if c.get("command") == COMMAND]
    check(len(commands) == 1, f"one slash command {COMMAND}",
          f"found {[c.get('command') for c in features.get('slash_commands') or []]}")
    command = commands[0] if commands else {}
    check(bool(command.get("description")) and bool(command.get("usage_hint")),
          f"{COMMAND} has a description and a usage_hint")

    shortcuts = [s for s in features.get("shortcuts") or []
                 if all(s.get(k) == v for k, v in SHORTCUT.items())]
    check(len(shortcuts) == 1 and bool(shortcuts[0].get("name"))
          and bool(shortcuts[0].get("description")),
          f"one message shortcut {SHORTCUT['callback_id']} with a name and a description",
          f"found {features.get('shortcuts')}")

    scopes = (app.get("oauth_config") or {}).get("scopes") or {}
    bot_scopes = scopes.get("bot") or []
    check(set(bot_scopes) == SCOPES and len(bot_scopes) == len(SCOPES),
          f"bot scopes are exactly {sorted(SCOPES)}", f"found {bot_scopes}")
    check(not scopes.get("user"), "no user scopes", f"found {scopes.get('user')}")

    events = settings.get("event_subscriptions") or {}
    for event in EVENTS:
        check(event in (events.get("bot_events") or []), f"bot event {event}",
              f"found {events.get('bot_events')}")
    home = features.get("app_home") or {}
    check(home.get("home_tab_enabled") is True, "features.app_home.home_tab_enabled is true",
          f"found {home.get('home_tab_enabled')!r}")
    interactivity = settings.get("interactivity") or {}
    check(interactivity.get("is_enabled") is True, "interactivity is enabled")
    check(settings.get("socket_mode_enabled") is socket_mode,
          f"socket_mode_enabled is {str(socket_mode).lower()}",
          f"found {settings.get('socket_mode_enabled')!r}")

    urls = {
        "slash command": command.get("url"),
        "interactivity": interactivity.get("request_url"),
        "events": events.get("request_url"),
    }
    for what, url in urls.items():
        route = SLACK_ROUTES[what]
        if socket_mode:
            check(url is None, f"{what}: no request URL in Socket Mode", f"found {url}")
            continue
        parsed = urlparse(url or "")
        check(parsed.scheme == "https" and bool(parsed.hostname) and parsed.path == route,
              f"{what} URL is https://<host>{route}", f"found {url!r}")


def rust_routes():
    print("-- routes in src/ (serve)")
    sources = [p.read_text(errors="replace") for p in Path("src").rglob("*.rs")]
    require = os.environ.get("CHECK_MANIFESTS_REQUIRE_ROUTES") == "1"
    missing = [r for r in list(SLACK_ROUTES.values()) + PROBE_ROUTES
               if not any(f'"{r}"' in s for s in sources)]
    for route in list(SLACK_ROUTES.values()) + PROBE_ROUTES:
        if route not in missing:
            check(True, f'"{route}" is routed in src/')
        elif require:
            check(False, f'"{route}" is routed in src/', "no such string literal under src/")
        else:
            print(f'  TODO "{route}" not found under src/ (not failing: set '
                  "CHECK_MANIFESTS_REQUIRE_ROUTES=1 once serve is in)")


def dockerfile():
    print("-- Dockerfile")
    text = Path("Dockerfile").read_text()
    final = text[text.rfind("\nFROM "):]  # the runtime stage
    user = re.search(r"^USER\s+(\d+)", final, re.M)
    expose = re.findall(r"^EXPOSE\s+(\d+)", final, re.M)
    check(user is not None and user.group(1) != "0", "runtime stage runs as a numeric non-root USER")
    check(expose == ["3000"], "EXPOSE 3000", f"found {expose}")
    check('ENTRYPOINT ["crm-username"]' in final and 'CMD ["serve"]' in final,
          'ENTRYPOINT ["crm-username"] and CMD ["serve"]')
    check(re.search(r"^STOPSIGNAL\s+SIGTERM", final, re.M) is not None, "STOPSIGNAL SIGTERM")
    check("--locked" in text, "cargo builds with --locked")
    builds = re.findall(r"^RUN cargo (?:build|chef cook) .*$", text, re.M)
    check(len(builds) == 2 and all("--no-default-features" in b for b in builds),
          "the image builds without the demo feature (--no-default-features)",
          f"found {builds}")
    return int(user.group(1)) if user else None


def kubernetes(rendered, image_uid):
    print(f"-- rendered kustomize base ({rendered})")
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    check("Secret" not in by_kind, "no Secret in the base (credentials are created separately)")
    for kind in ["Deployment", "Service", "ConfigMap", "PodDisruptionBudget"]:
        check(kind in by_kind, f"has a {kind}")
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    bot = deployments.get("crm-username")
    check(bot is not None, "Deployment crm-username")
    if bot is None:
        return
    pod = bot["spec"]["template"]["spec"]
    container = next((c for c in pod["containers"] if c["name"] == "crm-username"), None)
    check(container is not None, "container crm-username")
    if container is None:
        return
    check((container.get("args") or [None])[0] == "serve",
          "container runs serve", f"args {container.get('args')}")
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    check(ports.get("http") == 3000, "container port http is 3000 (BIND_ADDR default)")
    probes = {k: (container.get(k) or {}).get("httpGet", {}).get("path")
              for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    check(probes == {"startupProbe": "/readyz", "readinessProbe": "/readyz",
                     "livenessProbe": "/healthz"},
          "startup and readiness GET /readyz, liveness GET /healthz", f"found {probes}")
    security = pod.get("securityContext", {})
    check(security.get("runAsNonRoot") is True, "pod runAsNonRoot")
    check(security.get("runAsUser") == image_uid,
          f"runAsUser matches the image's USER ({image_uid})", f"found {security.get('runAsUser')}")
    c_security = container.get("securityContext", {})
    check(c_security.get("readOnlyRootFilesystem") is True
          and c_security.get("allowPrivilegeEscalation") is False
          and c_security.get("capabilities", {}).get("drop") == ["ALL"],
          "read-only root, no privilege escalation, capabilities dropped")

    env_maps = [e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e]
    config = {}
    for cm in by_kind.get("ConfigMap", []):
        if cm["metadata"]["name"] in env_maps:
            config.update(cm.get("data", {}))
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    bind = config.get("BIND_ADDR", "0.0.0.0:3000")
    check(bind.rsplit(":", 1)[-1] == "3000", "BIND_ADDR listens on 3000", f"found {bind}")
    check(config.get("LOG_FORMAT") == "json", "LOG_FORMAT=json")
    units_file = env.get("BUSINESS_UNITS_FILE") or config.get("BUSINESS_UNITS_FILE")
    mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
    check(bool(units_file) and os.path.dirname(units_file) in mounts,
          "BUSINESS_UNITS_FILE lies in a mounted volume", f"{units_file} vs mounts {mounts}")
    redis_url = urlparse(config.get("REDIS_URL", ""))
    services = {s["metadata"]["name"] for s in by_kind.get("Service", [])}
    check(redis_url.scheme in ("redis", "rediss"), "REDIS_URL is set (replicas share one cache)")
    if redis_url.hostname and "." not in redis_url.hostname:
        check(redis_url.hostname in services, f"REDIS_URL host {redis_url.hostname} is a Service of the base")


def separate_refresher(rendered, split_rendered):
    """The component manifests/k8s/separate-refresher: one `refresh --watch` pod with the
    bot's configuration, REFRESH_IN_SERVE=false on the bot, Redis reachable from both; the
    base itself keeps the refresher in `serve`."""
    print(f"-- the base with manifests/k8s/separate-refresher ({split_rendered})")
    base = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    docs = [d for d in yaml.safe_load_all(Path(split_rendered).read_text()) if d]

    def named(items, kind, name):
        return next((d for d in items if d["kind"] == kind and d["metadata"]["name"] == name), None)

    def container(deployment):
        if deployment is None:
            return {}
        return next((c for c in deployment["spec"]["template"]["spec"]["containers"]
                     if c["name"] == "crm-username"), {})

    def env(c):
        return {e["name"]: e.get("value") for e in c.get("env", [])}

    def selects(selector, labels):
        return all(labels.get(k) == v for k, v in selector.items())

    base_env = env(container(named(base, "Deployment", "crm-username")))
    check("REFRESH_IN_SERVE" not in base_env, "the base's bot runs the refresher (no REFRESH_IN_SERVE)",
          f"found {base_env.get('REFRESH_IN_SERVE')!r}")
    check(named(base, "Deployment", "crm-username-refresher") is None, "the base has no refresher Deployment")

    bot = named(docs, "Deployment", "crm-username")
    refresher = named(docs, "Deployment", "crm-username-refresher")
    check(bot is not None, "Deployment crm-username")
    check(refresher is not None, "Deployment crm-username-refresher")
    if bot is None or refresher is None:
        return
    bot_c, ref_c = container(bot), container(refresher)
    bot_pod, ref_pod = bot["spec"]["template"]["spec"], refresher["spec"]["template"]["spec"]
    check(env(bot_c).get("REFRESH_IN_SERVE") == "false", "the bot runs with REFRESH_IN_SERVE=false",
          f"found {env(bot_c).get('REFRESH_IN_SERVE')!r}")
    check((bot_c.get("args") or [None])[0] == "serve", "the bot still runs serve", f"args {bot_c.get('args')}")
    check(refresher["spec"].get("replicas") == 1, "the refresher has 1 replica",
          f"found {refresher['spec'].get('replicas')}")
    check(ref_c.get("args") == ["refresh", "--watch"], "the refresher runs refresh --watch",
          f"args {ref_c.get('args')}")
    check(ref_c.get("image") == bot_c.get("image"), "the refresher runs the bot's image",
          f"{ref_c.get('image')} vs {bot_c.get('image')}")
    ports = {p.get("name"): p.get("containerPort") for p in ref_c.get("ports", [])}
    check(ports.get("http") == 3000, "the refresher's port http is 3000 (BIND_ADDR)")
    probes = {k: (ref_c.get(k) or {}).get("httpGet", {}).get("path")
              for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in ref_c}
    check(probes == {"startupProbe": "/healthz", "livenessProbe": "/healthz"},
          "the refresher's startup and liveness probes GET /healthz (no readiness: no Service routes to it)",
          f"found {probes}")
    check(ref_c.get("envFrom") == bot_c.get("envFrom"), "the refresher has the bot's ConfigMap and Secret",
          f"{ref_c.get('envFrom')} vs {bot_c.get('envFrom')}")
    check(env(ref_c).get("BUSINESS_UNITS_FILE") == env(bot_c).get("BUSINESS_UNITS_FILE"),
          "the refresher reads the bot's BUSINESS_UNITS_FILE")
    check(ref_c.get("volumeMounts") == bot_c.get("volumeMounts")
          and ref_pod.get("volumes") == bot_pod.get("volumes"),
          "the refresher mounts the bot's volumes")
    memory = ((ref_c.get("resources") or {}).get("limits") or {}).get("memory")
    check(memory == "512Mi", "the refresher's memory limit is 512Mi", f"found {memory}")
    check(ref_c.get("securityContext") == bot_c.get("securityContext")
          and ref_pod.get("securityContext") == bot_pod.get("securityContext"),
          "the refresher runs as the bot does (non-root, read-only root)")
    labels = refresher["spec"]["template"]["metadata"]["labels"]
    for kind, name in [("Service", "crm-username"), ("PodDisruptionBudget", "crm-username")]:
        d = named(docs, kind, name)
        selector = (d or {}).get("spec", {}).get("selector", {})
        selector = selector.get("matchLabels", selector)
        check(d is not None and not selects(selector, labels),
              f"{kind} {name} does not select the refresher's pods", f"selector {selector}")
    policy = named(docs, "NetworkPolicy", "crm-username-redis")
    if policy is not None:
        allowed = [f.get("podSelector", {}).get("matchLabels", {})
                   for rule in policy["spec"].get("ingress", []) for f in rule.get("from", [])]
        check(any(selects(sel, labels) for sel in allowed),
              "the Redis NetworkPolicy admits the refresher's pods", f"found {allowed}")
        check(any(selects(sel, bot["spec"]["template"]["metadata"]["labels"]) for sel in allowed),
              "the Redis NetworkPolicy still admits the bot's pods", f"found {allowed}")


def prometheus_rule(path, rendered):
    """The PrometheusRule stays out of the kustomize base (its kind exists only with the
    Prometheus Operator, and the strict core-types validation does not know it): checked here
    for shape, and its alerts against the runbook in docs/deployment.md. That its PromQL names
    only metrics /metrics exposes is proven by a Rust test (tests/it/prometheus_rule.rs)."""
    print(f"-- {path}")
    rule = yaml.safe_load(Path(path).read_text())
    check(rule.get("apiVersion") == "monitoring.coreos.com/v1" and rule.get("kind") == "PrometheusRule",
          "a monitoring.coreos.com/v1 PrometheusRule")
    kinds = [d.get("kind") for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    check("PrometheusRule" not in kinds, "kept out of the kustomize base (core types only)")
    runbook = Path("docs/deployment.md").read_text() if Path("docs/deployment.md").exists() else ""
    headings = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.*)$", runbook, re.M)}
    for group in (rule.get("spec") or {}).get("groups") or []:
        for r in group.get("rules") or []:
            name = r.get("alert", "?")
            check(bool(r.get("expr")) and (r.get("labels") or {}).get("severity") in ("critical", "warning", "info"),
                  f"{name} has an expression and a severity")
            link = re.search(r"docs/deployment\.md#([a-z0-9-]+)", (r.get("annotations") or {}).get("description", ""))
            check(link is not None and link.group(1) in headings,
                  f"{name} links to its section of docs/deployment.md",
                  f"found {link.group(1) if link else None}")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    slack_manifest("manifests/slack-app.yaml", socket_mode=False)
    slack_manifest("manifests/slack-app-socket-mode.yaml", socket_mode=True)
    uid = dockerfile()
    kubernetes(sys.argv[1], uid)
    if len(sys.argv) == 3:
        separate_refresher(sys.argv[1], sys.argv[2])
    prometheus_rule("manifests/k8s/prometheus-rule.yaml", sys.argv[1])
    rust_routes()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

//! The files in `deploy/` against the code they deploy: the Compose file follows the Compose
//! specification and runs commands the binary accepts, its env example is a valid
//! configuration, the Kubernetes manifests agree with each other and with the sender's drain
//! deadline, every alert has unit tests, and the dashboard and the rules name only metrics
//! Herald exports. (scripts/check-deploy.sh lints the same files with hadolint, promtool and
//! kubernetes-validate; tests/prometheus.rs runs every query against a real Prometheus.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use herald::config::Config;
use serde_json::Value as Json;
use serde_yaml_ng::Value;

mod common;
use common::{herald, root};

fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// `KEY=VALUE` lines of an env file (comments and blank lines skipped).
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Compose's interpolation: `$$`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?error}`, `${VAR?error}`.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let Some(r) = rest.strip_prefix('{') else {
            return Err(format!("a bare $ before {:?}", &rest[..rest.len().min(20)]));
        };
        let end = r.find('}').ok_or("an unclosed ${")?;
        let expr = &r[..end];
        rest = &r[end + 1..];
        let name_end = expr
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len());
        let (name, op) = expr.split_at(name_end);
        let value = vars.get(name).map(String::as_str);
        let set = value.filter(|v| !v.is_empty());
        let resolved = match op {
            "" => value.unwrap_or("").to_owned(),
            _ if op.starts_with(":-") => set.unwrap_or(&op[2..]).to_owned(),
            _ if op.starts_with('-') => value.unwrap_or(&op[1..]).to_owned(),
            _ if op.starts_with(":?") => set.ok_or(format!("{name}: {}", &op[2..]))?.to_owned(),
            _ if op.starts_with('?') => value.ok_or(format!("{name}: {}", &op[1..]))?.to_owned(),
            _ => return Err(format!("unsupported ${{{expr}}}")),
        };
        out.push_str(&resolved);
    }
    out.push_str(rest);
    Ok(out)
}

/// The Compose file as Compose reads it with these variables: interpolated, merge keys
/// applied, and checked against the Compose specification's types.
fn compose(vars: &BTreeMap<String, String>) -> Value {
    let text = interpolate(&read("compose.yaml"), vars).expect("interpolation");
    let mut value: Value = serde_yaml_ng::from_str(&text).expect("YAML");
    value.apply_merge().expect("merge keys");
    let spec: Result<compose_spec::Compose, _> = serde_yaml_ng::from_value(value.clone());
    if let Err(e) = spec {
        panic!("deploy/compose.yaml does not follow the Compose specification: {e}");
    }
    value
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The binary accepts these arguments (clap checks them before it answers --help).
fn accepts(args: &[String]) {
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let out = herald(&with_help, &[]);
    assert!(
        out.status.success(),
        "herald {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn seconds(text: &str) -> u64 {
    text.strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text:?} is not a number of seconds"))
}

#[test]
fn the_compose_file_follows_the_spec_and_runs_what_the_docs_say() {
    let vars = env_file(&read(".env.example"));
    let c = compose(&vars);
    let services = &c["services"];
    for s in [
        "redis",
        "api",
        "webhook",
        "worker",
        "sim",
        "prometheus",
        "grafana",
    ] {
        assert!(services.get(s).is_some(), "no {s} service");
    }
    // Redis keeps what it acknowledged: AOF every second, never evicts a job, and refuses
    // writes at a limit instead of growing until it is killed.
    let redis = strings(&services["redis"]["command"]).join(" ");
    for setting in [
        "--appendonly yes",
        "--appendfsync everysec",
        "--maxmemory-policy noeviction",
        "--maxmemory ",
    ] {
        assert!(
            redis.contains(setting),
            "redis runs without {setting}: {redis}"
        );
    }
    assert!(
        strings(&services["redis"]["volumes"])
            .iter()
            .any(|v| v.ends_with(":/data"))
    );

    let cfg = Config::default();
    for s in ["api", "webhook", "worker", "sim"] {
        let args = strings(&services[s]["command"]);
        accepts(&args);
        let grace = services[s]["stop_grace_period"].as_str().unwrap_or("10s");
        if s != "sim" {
            assert!(
                seconds(grace) > cfg.sender.shutdown_deadline_secs + 5,
                "{s}: stop_grace_period {grace} leaves in-flight sends no time to settle"
            );
            assert!(services[s]["environment"]["REDIS_URL"].is_string());
        }
    }
    assert_eq!(
        strings(&services["api"]["command"]),
        ["serve", "--role", "api"]
    );
    assert_eq!(services["worker"]["deploy"]["replicas"].as_u64(), Some(2));
    assert_eq!(strings(&services["sim"]["profiles"]), ["sim"]);

    // Every file mounted from deploy/ exists.
    for (name, service) in services.as_mapping().unwrap() {
        for volume in strings(&service["volumes"]) {
            if let Some(path) = volume.strip_prefix("./") {
                let file = path.split(':').next().unwrap();
                assert!(
                    deploy(file).exists(),
                    "{name:?} mounts missing deploy/{file}"
                );
            }
        }
    }
    // Secrets are required: no variable, no start.
    let mut without = vars.clone();
    without.remove("HERALD_API_KEY");
    let e = interpolate(&read("compose.yaml"), &without).unwrap_err();
    assert!(e.contains("HERALD_API_KEY"), "{e}");
    // The env file itself is never committed.
    let ignored = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(ignored.lines().any(|l| l == "/deploy/.env"), "{ignored}");
}

#[test]
fn the_env_example_is_a_valid_configuration() {
    let vars = env_file(&read(".env.example"));
    let c = compose(&vars);
    // What a Herald container sees: the env file, then the service's own environment.
    let mut env = vars.clone();
    for (k, v) in c["services"]["api"]["environment"].as_mapping().unwrap() {
        env.insert(
            k.as_str().unwrap().to_owned(),
            v.as_str().unwrap().to_owned(),
        );
    }
    env.insert("HERALD_SERVER__LISTEN".into(), "0.0.0.0:8080".into());
    let cfg = Config::load(Some(&root().join("config/herald.toml")), &env)
        .unwrap_or_else(|e| panic!("deploy/.env.example: {e}"));
    assert!(!cfg.server.api_key.is_empty());
    assert_eq!(cfg.whatsapp.api_base, "http://sim:7000");
    assert_eq!(
        cfg.redis_url().unwrap(),
        "redis://:change-me-too@redis:6379/0"
    );
}

/// Every document of every manifest file under deploy/kubernetes.
fn manifests() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(deploy("kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc).expect(&name);
            if !v.is_null() {
                docs.push((name.clone(), v));
            }
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &'static str) -> impl Iterator<Item = &'a Value> {
    docs.iter()
        .filter(move |(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_mapping()
        .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[test]
fn the_kubernetes_manifests_agree_with_each_other_and_the_code() {
    let docs = manifests();
    let of = |kind: &'static str| of_kind(&docs, kind);
    let secret = of("Secret").next().expect("secret.example.yaml");
    let secret_env: BTreeMap<String, String> = secret["stringData"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
        .collect();
    let cfg = Config::from_toml(
        &std::fs::read_to_string(deploy("kubernetes/herald.toml")).unwrap(),
        &secret_env,
    )
    .unwrap_or_else(|e| panic!("deploy/kubernetes/herald.toml with the example Secret: {e}"));
    assert!(cfg.listen_addr().unwrap().ip().is_unspecified());

    let deployments: Vec<&Value> = of("Deployment").collect();
    assert_eq!(deployments.len(), 3, "api, webhook, worker");
    for d in &deployments {
        let name = d["metadata"]["name"].as_str().unwrap();
        let pod = &d["spec"]["template"];
        assert!(
            labels_match(
                &d["spec"]["selector"]["matchLabels"],
                &pod["metadata"]["labels"]
            ),
            "{name}: the selector does not match its Pods"
        );
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        assert!(
            grace > cfg.sender.shutdown_deadline_secs + 5,
            "{name}: terminationGracePeriodSeconds {grace} is not above the drain deadline"
        );
        let c = &pod["spec"]["containers"][0];
        accepts(&strings(&c["args"]));
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        for r in ["cpu", "memory"] {
            assert!(
                c["resources"]["requests"][r].is_string(),
                "{name}: no {r} request"
            );
            assert!(
                c["resources"]["limits"][r].is_string(),
                "{name}: no {r} limit"
            );
        }
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}"
        );
        assert_eq!(
            c["envFrom"][0]["secretRef"]["name"], secret["metadata"]["name"],
            "{name}"
        );
    }
    // Every PodDisruptionBudget and Service selects Pods of some workload.
    let selects_pods = |selector: &Value| {
        deployments
            .iter()
            .chain(of("StatefulSet").collect::<Vec<_>>().iter())
            .any(|d| labels_match(selector, &d["spec"]["template"]["metadata"]["labels"]))
    };
    for pdb in of("PodDisruptionBudget") {
        assert!(
            selects_pods(&pdb["spec"]["selector"]["matchLabels"]),
            "{pdb:?}"
        );
    }
    let services: Vec<&Value> = of("Service").collect();
    for s in &services {
        assert!(selects_pods(&s["spec"]["selector"]), "{s:?}");
    }
    let hpa = of("HorizontalPodAutoscaler").next().expect("an HPA");
    let target = hpa["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
    assert!(
        deployments.iter().any(|d| d["metadata"]["name"] == target),
        "{target}"
    );
    // The ServiceMonitor scrapes the API, webhook and worker Services, on a port they name.
    let monitor = of("ServiceMonitor").next().expect("a ServiceMonitor");
    let port = &monitor["spec"]["endpoints"][0]["port"];
    let scraped = services
        .iter()
        .filter(|s| {
            labels_match(
                &monitor["spec"]["selector"]["matchLabels"],
                &s["metadata"]["labels"],
            )
        })
        .inspect(|s| {
            let ports = s["spec"]["ports"].as_sequence().unwrap();
            assert!(
                ports.iter().any(|p| &p["name"] == port),
                "{s:?} has no port {port:?}"
            );
        })
        .count();
    assert_eq!(scraped, 3, "api, webhook and worker are scraped");
    // The Ingress exposes only /webhook, to the webhook Service, over TLS.
    let ingress = of("Ingress").next().expect("an Ingress");
    assert!(ingress["spec"]["tls"][0]["secretName"].is_string());
    let paths = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_sequence()
        .unwrap();
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0]["path"], "/webhook");
    assert_eq!(paths[0]["backend"]["service"]["name"], "herald-webhook");
    // Redis: AOF every second, noeviction, on a volume claim.
    let redis = of("StatefulSet").next().expect("Redis");
    let args = strings(&redis["spec"]["template"]["spec"]["containers"][0]["args"]).join(" ");
    for setting in [
        "--appendonly yes",
        "--appendfsync everysec",
        "--maxmemory-policy noeviction",
        "--maxmemory ",
    ] {
        assert!(
            args.contains(setting),
            "redis runs without {setting}: {args}"
        );
    }
    // maxmemory leaves the container room for an AOF rewrite's fork: at most three quarters
    // of its memory limit.
    let container = &redis["spec"]["template"]["spec"]["containers"][0];
    let maxmemory = args
        .split_once("--maxmemory ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.strip_suffix("mb"))
        .and_then(|mb| mb.parse::<u64>().ok())
        .expect("--maxmemory in mb")
        * 1_000_000;
    let limit = container["resources"]["limits"]["memory"]
        .as_str()
        .and_then(|v| v.strip_suffix("Gi"))
        .and_then(|gi| gi.parse::<u64>().ok())
        .expect("a memory limit in Gi")
        << 30;
    assert!(
        maxmemory * 4 <= limit * 3,
        "maxmemory {maxmemory} B leaves too little of the {limit} B limit"
    );
    assert!(
        redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
            .is_string()
    );
    // Something guards every Pod's ingress.
    assert!(of("NetworkPolicy").any(|p| {
        p["spec"]["podSelector"]
            .as_mapping()
            .is_some_and(|m| m.is_empty())
    }));
}

#[test]
fn every_alert_has_a_test_that_fires_and_one_that_stays_quiet() {
    let rules: Value = serde_yaml_ng::from_str(&read("alerts.yml")).unwrap();
    let tests: Value = serde_yaml_ng::from_str(&read("alerts.test.yml")).unwrap();
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tests["tests"].as_sequence().unwrap() {
        for case in t["alert_rule_test"].as_sequence().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            if case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
            {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            alerts += 1;
            assert!(fires.contains(name), "no test shows {name} firing");
            assert!(quiet.contains(name), "no test shows {name} staying quiet");
            assert!(
                rule["labels"]["severity"].is_string(),
                "{name} has no severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{name} has no summary"
            );
        }
    }
    assert!(alerts >= 10, "{alerts} alerts");
}

/// Every query of the dashboard: panel targets, then template variables.
fn dashboard_queries(d: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn the_dashboard_is_well_formed() {
    let d: Json = serde_json::from_str(&read("grafana/herald-dashboard.json")).unwrap();
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["name"] == "campaign" && v["includeAll"] == true)
    );
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: duplicate id"
        );
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{title}: wider than the grid"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        assert!(
            p["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{title}: no description"
        );
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{title}: no query"
        );
    }
    for (title, expr) in dashboard_queries(&d) {
        if expr.contains("herald_campaign_") {
            assert!(
                expr.contains("$campaign"),
                "{title}: ignores the campaign selector: {expr}"
            );
            // Two API processes can export briefly at once: dedupe before summing.
            assert!(expr.contains("max by (campaign"), "{title}: {expr}");
        }
    }
}

fn names_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("herald_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        i = end;
        // A family named in prose (`herald_campaign_*`), not a metric.
        if name.ends_with('_') {
            continue;
        }
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        found.insert(base.to_owned());
    }
    found
}

#[test]
fn deploy_files_name_only_exported_metrics() {
    let known: BTreeSet<&str> = herald_core::metrics::ALL
        .iter()
        .chain(herald_core::metrics::CAMPAIGN)
        .chain(herald_core::metrics::DEPLOYMENT)
        .map(|(n, _, _)| *n)
        .collect();
    let mut used = BTreeSet::new();
    for file in [
        "alerts.yml",
        "alerts.test.yml",
        "grafana/herald-dashboard.json",
    ] {
        for name in names_in(&read(file)) {
            assert!(
                known.contains(name.as_str()),
                "{file} uses unknown metric {name}"
            );
            used.insert(name);
        }
    }
    // The dashboard shows every campaign series.
    let dashboard = names_in(&read("grafana/herald-dashboard.json"));
    for (name, _, _) in herald_core::metrics::CAMPAIGN
        .iter()
        .chain(herald_core::metrics::DEPLOYMENT)
    {
        let shown = dashboard.contains(*name)
            || *name == herald_core::metrics::CAMPAIGN_START_TIMESTAMP_SECONDS;
        assert!(shown, "the dashboard does not show {name}");
    }
    assert!(
        used.len() >= 20,
        "the dashboard covers the main metrics: {used:?}"
    );
}

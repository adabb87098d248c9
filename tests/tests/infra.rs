//! The SAM template in `infra/` must agree with the code it deploys: the
//! variables the configuration loader reads, the retry schedule behind the
//! dead-letter redrive, the table's keys, the binaries it builds, and the
//! least-privilege rule. A change to one side without the other fails here
//! instead of in a deployed stack.

use std::collections::{BTreeMap, BTreeSet};

use hookline_tests::template::{
    delivery_queue, function_property, functions, infra_dir, queue_named_by, resources,
    resources_of_type, scalar_text, template, workspace_root,
};
use serde_json::{Map, Value};
use shared::config::{self, VARIABLES};
use shared::retry::{self, RetrySchedule};
use shared::store::schema;

/// Where `Ref` points when it names a parameter.
fn parameter<'t>(template: &'t Value, value: &Value) -> Option<(&'t str, &'t Value)> {
    let name = value.get("Ref")?.as_str()?;
    template["Parameters"]
        .as_object()?
        .get_key_value(name)
        .map(|(k, v)| (k.as_str(), v))
}

/// Evaluates the little CloudFormation a value here may use: literals,
/// `Ref` to a parameter (its value in `overrides`, else its default) and
/// `Fn::FindInMap`. Anything else is a failure: the check cannot see through it.
fn evaluate(template: &Value, value: &Value, overrides: &BTreeMap<String, String>) -> String {
    if let Some(name) = value.get("Ref").and_then(Value::as_str) {
        if let Some(given) = overrides.get(name) {
            return given.clone();
        }
        let parameter = template["Parameters"]
            .get(name)
            .unwrap_or_else(|| panic!("Ref {name} is not a parameter"));
        let default = parameter
            .get("Default")
            .unwrap_or_else(|| panic!("parameter {name} has no Default"));
        return scalar_text(default);
    }
    if let Some(args) = value.get("Fn::FindInMap").and_then(Value::as_array) {
        let keys: Vec<String> = args
            .iter()
            .map(|a| evaluate(template, a, overrides))
            .collect();
        let [map, top, second] = keys.as_slice() else {
            panic!("Fn::FindInMap takes three arguments: {value}");
        };
        let found = &template["Mappings"][map][top][second];
        assert!(!found.is_null(), "no Mappings.{map}.{top}.{second}");
        return scalar_text(found);
    }
    scalar_text(value)
}

fn evaluate_number(template: &Value, value: &Value, overrides: &BTreeMap<String, String>) -> u64 {
    let text = evaluate(template, value, overrides);
    text.parse()
        .unwrap_or_else(|_| panic!("{value} evaluates to {text:?}, not a whole number"))
}

/// Every value a deployer may give the parameter `value` refers to: its
/// `AllowedValues`, else its default and `MaxValue`. A literal is itself.
fn possible_values(template: &Value, value: &Value) -> Vec<u64> {
    let Some((name, parameter)) = parameter(template, value) else {
        return vec![evaluate_number(template, value, &BTreeMap::new())];
    };
    let number = |v: &Value| -> u64 {
        scalar_text(v)
            .parse()
            .unwrap_or_else(|_| panic!("parameter {name}: {v} is not a whole number"))
    };
    if let Some(allowed) = parameter.get("AllowedValues").and_then(Value::as_array) {
        return allowed.iter().map(number).collect();
    }
    ["Default", "MaxValue"]
        .iter()
        .filter_map(|key| parameter.get(*key))
        .map(number)
        .collect()
}

fn environment(template: &Value, function: &Value) -> Map<String, Value> {
    let mut variables = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(own) = function["Properties"]["Environment"]["Variables"].as_object() {
        variables.extend(own.clone());
    }
    variables
}

/// The dispatcher: the function SQS events drive, with those events (one per
/// queue: the delivery queue's and the slow lane's).
fn dispatcher(template: &Value) -> (&str, &Value, Vec<&Value>) {
    let mut found = Vec::new();
    for (name, function) in functions(template) {
        if let Some(events) = function["Properties"]["Events"].as_object() {
            let sqs: Vec<&Value> = events.values().filter(|e| e["Type"] == "SQS").collect();
            if !sqs.is_empty() {
                found.push((name, function, sqs));
            }
        }
    }
    assert_eq!(found.len(), 1, "expected exactly one SQS-driven function");
    found.pop().expect("one")
}

/// The queue an SQS event reads: its logical id.
fn event_queue(event: &Value) -> &str {
    event["Properties"]["Queue"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap_or_else(|| panic!("an SQS event's Queue is !GetAtt X.Arn: {event}"))
}

#[test]
fn every_function_gets_every_configuration_variable() {
    let template = template();
    for (name, function) in functions(&template) {
        let variables = environment(&template, function);
        for variable in VARIABLES {
            assert!(
                variables.contains_key(*variable),
                "{name} lacks {variable}: every function loads the whole configuration"
            );
        }
        assert_eq!(
            variables
                .get(config::ALLOW_PRIVATE_TARGETS)
                .map(scalar_text)
                .as_deref(),
            Some("0"),
            "{name}: a deployed function must refuse private delivery targets"
        );
    }
}

#[test]
fn configuration_defaults_and_bounds_match_the_loader() {
    let template = template();
    let (_, function) = functions(&template)[0];
    let variables = environment(&template, function);
    let none = BTreeMap::new();
    let default_of = |variable: &str| evaluate(&template, &variables[variable], &none);

    assert_eq!(default_of(config::RETRY_SCHEDULE), retry::DEFAULT);
    assert_eq!(
        default_of(config::REQUEST_TIMEOUT_MS),
        config::DEFAULT_REQUEST_TIMEOUT_MS.to_string()
    );
    assert_eq!(
        default_of(config::RETENTION_DAYS),
        config::DEFAULT_RETENTION_DAYS.to_string()
    );
    assert_eq!(default_of(config::API_VERSION), config::DEFAULT_API_VERSION);
    assert_eq!(
        default_of(config::PORTAL_FRAME_ANCESTORS),
        config::DEFAULT_PORTAL_FRAME_ANCESTORS
    );
    assert_eq!(
        shared::retry::parse_duration(&default_of(config::DISABLE_AFTER)),
        Some(config::DEFAULT_DISABLE_AFTER)
    );

    // A parameter's bounds must not let a deployer pick a value the loader refuses.
    for (variable, max) in [
        (config::REQUEST_TIMEOUT_MS, config::MAX_REQUEST_TIMEOUT_MS),
        (
            config::RETENTION_DAYS,
            u64::from(config::MAX_RETENTION_DAYS),
        ),
    ] {
        if let Some((name, parameter)) = parameter(&template, &variables[variable]) {
            assert_eq!(
                parameter.get("MaxValue").map(scalar_text),
                Some(max.to_string()),
                "parameter {name} ({variable}) must stop at the loader's bound"
            );
            assert_eq!(
                parameter.get("MinValue").map(scalar_text).as_deref(),
                Some("1"),
                "parameter {name} ({variable}) must start at 1"
            );
        }
    }
}

#[test]
fn the_redrive_follows_the_retry_schedule() {
    let template = template();
    let queue = delivery_queue(&template);
    let none = BTreeMap::new();
    let max_receive_count = evaluate_number(
        &template,
        &queue["Properties"]["RedrivePolicy"]["maxReceiveCount"],
        &none,
    );
    assert_eq!(
        max_receive_count,
        u64::from(RetrySchedule::default().max_receive_count()),
        "maxReceiveCount must be the default schedule's attempts plus the margin"
    );
    assert!(
        max_receive_count > u64::from(RetrySchedule::default().attempts()),
        "maxReceiveCount is a safety net above the attempts, never a cut"
    );

    let (_, function) = functions(&template)[0];
    let schedule = evaluate(
        &template,
        &environment(&template, function)[config::RETRY_SCHEDULE],
        &none,
    );
    let parsed = RetrySchedule::parse(&schedule)
        .unwrap_or_else(|e| panic!("the template's retry schedule {schedule:?}: {e}"));
    assert_eq!(u64::from(parsed.max_receive_count()), max_receive_count);
}

#[test]
fn visibility_timeout_is_at_least_six_dispatcher_timeouts() {
    let template = template();
    let (name, function, events) = dispatcher(&template);
    for event in events {
        let timeout = function_property(&template, function, "Timeout");
        assert!(!timeout.is_null(), "{name} has no Timeout");
        let visibility =
            &resources(&template)[event_queue(event)]["Properties"]["VisibilityTimeout"];
        assert!(
            !visibility.is_null(),
            "the delivery queue has no VisibilityTimeout"
        );
        // Lambda's guidance for SQS sources also adds the batching window.
        let window = &event["Properties"]["MaximumBatchingWindowInSeconds"];
        let longest_window = if window.is_null() {
            0
        } else {
            possible_values(&template, window)
                .into_iter()
                .max()
                .unwrap_or(0)
        };

        // Check every timeout a deployer may choose, not only the default.
        let choices = possible_values(&template, timeout);
        assert!(!choices.is_empty());
        for seconds in choices {
            let mut overrides = BTreeMap::new();
            if let Some((parameter, _)) = parameter(&template, timeout) {
                overrides.insert(parameter.to_string(), seconds.to_string());
            }
            let visibility = evaluate_number(&template, visibility, &overrides);
            assert!(
                visibility >= 6 * seconds + longest_window,
                "visibility timeout {visibility}s < 6 x {name} timeout {seconds}s + batching window {longest_window}s"
            );
            assert!(
                visibility <= 43_200,
                "SQS caps the visibility timeout at 12 h"
            );
        }
    }
}

#[test]
fn the_dispatcher_reports_partial_batch_failures() {
    let template = template();
    let (name, _, events) = dispatcher(&template);
    for event in events {
        let types = event["Properties"]["FunctionResponseTypes"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}'s SQS event sets no FunctionResponseTypes"));
        assert!(
            types.iter().any(|t| t == "ReportBatchItemFailures"),
            "{name} returns batchItemFailures; without ReportBatchItemFailures Lambda ignores them"
        );
    }
}

#[test]
fn the_slow_lane_is_capped_redrives_as_the_delivery_queue_and_runs_locally_alike() {
    let template = template();
    let (delivery, _) = queue_named_by(&template, config::DELIVERY_QUEUE_URL);
    let (slow, slow_queue) = queue_named_by(&template, config::SLOW_QUEUE_URL);
    assert_ne!(delivery, slow, "the slow lane is a queue of its own");
    // Same redrive, same retention: a job is kept and parked alike on either queue.
    let delivery_queue = delivery_queue(&template);
    for key in [
        "RedrivePolicy",
        "MessageRetentionPeriod",
        "VisibilityTimeout",
    ] {
        assert_eq!(
            slow_queue["Properties"][key], delivery_queue["Properties"][key],
            "the slow lane's {key}"
        );
    }
    let (_, _, events) = dispatcher(&template);
    let queues: BTreeSet<&str> = events.iter().map(|e| event_queue(e)).collect();
    assert_eq!(
        queues,
        BTreeSet::from([delivery, slow]),
        "one event source per queue"
    );
    let slow_event = events
        .iter()
        .find(|e| event_queue(e) == slow)
        .expect("the slow lane's event source");
    let cap = &slow_event["Properties"]["ScalingConfig"]["MaximumConcurrency"];
    assert!(!cap.is_null(), "the slow lane's concurrency is capped");
    let none = BTreeMap::new();
    assert_eq!(
        evaluate_number(&template, cap, &none),
        hookline_cli::local::SLOW_LANE_CONCURRENCY as u64,
        "hookline dev runs the slow lane at the template's default cap"
    );
}

#[test]
fn the_table_has_the_keys_the_store_uses() {
    let template = template();
    let tables = resources_of_type(&template, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1, "hookline keeps one table");
    let properties = &tables[0].1["Properties"];

    let key_of = |key_schema: &Value, kind: &str| -> String {
        key_schema
            .as_array()
            .expect("a KeySchema is a list")
            .iter()
            .find(|k| k["KeyType"] == kind)
            .map(|k| scalar_text(&k["AttributeName"]))
            .unwrap_or_else(|| panic!("no {kind} key in {key_schema}"))
    };
    assert_eq!(
        key_of(&properties["KeySchema"], "HASH"),
        schema::PARTITION_KEY
    );
    assert_eq!(key_of(&properties["KeySchema"], "RANGE"), schema::SORT_KEY);

    let indexes: BTreeSet<(String, String, String)> = properties["GlobalSecondaryIndexes"]
        .as_array()
        .expect("the table has GlobalSecondaryIndexes")
        .iter()
        .map(|index| {
            let name = scalar_text(&index["IndexName"]);
            assert_eq!(
                index["Projection"]["ProjectionType"], "INCLUDE",
                "index {name} projects only what its queries return"
            );
            let projected: Vec<String> = index["Projection"]["NonKeyAttributes"]
                .as_array()
                .unwrap_or_else(|| panic!("index {name} names its attributes"))
                .iter()
                .map(scalar_text)
                .collect();
            assert_eq!(
                projected,
                schema::projected_attributes(&name),
                "index {name}"
            );
            let hash = key_of(&index["KeySchema"], "HASH");
            let range = key_of(&index["KeySchema"], "RANGE");
            (name, hash, range)
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = schema::INDEXES
        .iter()
        .map(|(name, hash, range)| (name.to_string(), hash.to_string(), range.to_string()))
        .collect();
    assert_eq!(indexes, expected);

    // Every key attribute is declared, as a string.
    let declared: BTreeMap<String, String> = properties["AttributeDefinitions"]
        .as_array()
        .expect("the table has AttributeDefinitions")
        .iter()
        .map(|d| {
            (
                scalar_text(&d["AttributeName"]),
                scalar_text(&d["AttributeType"]),
            )
        })
        .collect();
    let key_attributes = [schema::PARTITION_KEY, schema::SORT_KEY].into_iter().chain(
        schema::INDEXES
            .iter()
            .flat_map(|(_, hash, range)| [*hash, *range]),
    );
    for attribute in key_attributes {
        assert_eq!(
            declared.get(attribute).map(String::as_str),
            Some("S"),
            "{attribute}"
        );
    }

    let ttl = &properties["TimeToLiveSpecification"];
    assert_eq!(ttl["AttributeName"], schema::TTL_ATTRIBUTE);
    assert_eq!(ttl["Enabled"], true);
}

/// The `[[bin]]` names of the crates under `functions/`. A line scan is
/// enough for these manifests and spares a TOML parser.
fn function_binaries() -> BTreeSet<String> {
    let dir = workspace_root().join("functions");
    let mut binaries = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("functions/ exists") {
        let manifest = entry
            .expect("readable functions/ entry")
            .path()
            .join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin
                && let Some(rest) = line.strip_prefix("name")
                && let Some(value) = rest.trim_start().strip_prefix('=')
            {
                binaries.insert(value.trim().trim_matches('"').to_string());
            }
        }
    }
    binaries
}

#[test]
fn every_function_builds_a_workspace_binary() {
    let template = template();
    let binaries = function_binaries();
    let mut built = BTreeSet::new();
    for (name, function) in functions(&template) {
        assert_eq!(
            function["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{name} is built with cargo-lambda"
        );
        let binary = scalar_text(&function["Metadata"]["BuildProperties"]["Binary"]);
        assert!(
            binaries.contains(&binary),
            "{name} builds binary {binary:?}, but functions/ has only {binaries:?}"
        );
        assert!(built.insert(binary.clone()), "two functions build {binary}");

        let code_uri = scalar_text(function_property(&template, function, "CodeUri"));
        let manifest = infra_dir().join(&code_uri).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|_| panic!("{name}: CodeUri {code_uri} has no Cargo.toml"));
        assert!(
            text.contains("[workspace]"),
            "{name}: CodeUri must be the workspace root"
        );
    }
    assert_eq!(built, binaries, "every function binary is deployed");

    // `make package` builds the zips `docs/deploy.md` puts on a stack.
    let makefile = std::fs::read_to_string(infra_dir().join("infra.mk")).expect("infra/infra.mk");
    let packaged: BTreeSet<String> = makefile
        .lines()
        .find_map(|line| line.strip_prefix("LAMBDA_BINARIES :="))
        .expect("infra.mk sets LAMBDA_BINARIES")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(packaged, built, "`make package` zips every deployed binary");
}

/// Every IAM statement in the template, wherever it sits.
fn statements<'t>(value: &'t Value, path: &str, found: &mut Vec<(String, &'t Value)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{path}.{key}");
                if key == "Statement" {
                    match child {
                        Value::Array(list) => found.extend(list.iter().map(|s| (here.clone(), s))),
                        single => found.push((here, single)),
                    }
                } else {
                    statements(child, &here, found);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                statements(child, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn no_iam_statement_grants_on_every_resource() {
    let template = template();
    let mut found = Vec::new();
    statements(&template["Resources"], "Resources", &mut found);
    assert!(
        !found.is_empty(),
        "the template has no IAM statements to check"
    );
    for (path, statement) in found {
        assert!(
            statement.get("NotResource").is_none(),
            "{path}: NotResource"
        );
        let resources = match statement.get("Resource") {
            None => continue, // a trust policy: it names principals, not resources
            Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
            Some(single) => vec![single],
        };
        for resource in resources {
            assert_ne!(resource, "*", "{path}: a statement on every resource");
        }
    }

    // A role SAM generates carries AWSLambdaBasicExecutionRole, whose log
    // statement is on every resource; every function gets one of ours instead.
    for (name, function) in functions(&template) {
        let role = function_property(&template, function, "Role");
        let role_resource = role
            .get("Fn::GetAtt")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{name} must use a role from this template, found {role}"));
        assert_eq!(
            resources(&template)[role_resource]["Type"],
            "AWS::IAM::Role",
            "{name}"
        );
        assert!(
            function["Properties"].get("Policies").is_none(),
            "{name}: permissions belong in its role"
        );
    }
}

#[test]
fn the_http_api_routes_to_ingest_what_the_local_gateway_does() {
    let template = template();
    let (name, ingest) = functions(&template)
        .into_iter()
        .find(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"] == "ingest")
        .expect("a function runs the ingest binary");
    let routed: BTreeSet<String> = ingest["Properties"]["Events"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has no events"))
        .values()
        .filter(|event| event["Type"] == "HttpApi")
        .map(|event| scalar_text(&event["Properties"]["Path"]))
        .collect();
    let local: BTreeSet<String> = hookline_cli::local::gateway::INGEST_PATHS
        .iter()
        .map(|path| path.to_string())
        .collect();
    assert_eq!(routed, local, "{name}'s routes and hookline dev's differ");
}

#[test]
fn every_function_logs_json_lines() {
    let template = template();
    for (name, function) in functions(&template) {
        let logging = function_property(&template, function, "LoggingConfig");
        assert_eq!(
            logging["LogFormat"], "JSON",
            "{name}: EMF metrics and the fields of its log lines need LogFormat JSON"
        );
    }
}

/// Every metric an alarm watches: (namespace, name, dimension values), from the
/// one-metric form or from each `MetricStat` of a metric-math alarm.
fn watched(alarm: &Value) -> Vec<(String, String, Vec<Value>)> {
    let properties = &alarm["Properties"];
    let one = |metric: &Value| {
        let dimensions = metric["Dimensions"]
            .as_array()
            .map(|list| list.iter().map(|d| d["Value"].clone()).collect())
            .unwrap_or_default();
        (
            scalar_text(&metric["Namespace"]),
            scalar_text(&metric["MetricName"]),
            dimensions,
        )
    };
    match properties["Metrics"].as_array() {
        Some(metrics) => metrics
            .iter()
            .filter(|m| !m["MetricStat"].is_null())
            .map(|m| one(&m["MetricStat"]["Metric"]))
            .collect(),
        None => vec![one(properties)],
    }
}

#[test]
fn alarms_watch_every_function_the_api_the_table_and_unrecorded_attempts() {
    let template = template();
    let alarms: Vec<_> = resources_of_type(&template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .flat_map(|(_, alarm)| watched(alarm))
        .collect();
    let watches = |namespace: &str, metric: &str, resource: &str| {
        alarms.iter().any(|(ns, name, dimensions)| {
            ns == namespace && name == metric && dimensions.iter().any(|d| d["Ref"] == resource)
        })
    };
    for (name, _) in functions(&template) {
        for metric in ["Errors", "Throttles"] {
            assert!(
                watches("AWS/Lambda", metric, name),
                "no alarm on {name}'s {metric}"
            );
        }
    }
    let (api, _) = resources_of_type(&template, "AWS::Serverless::HttpApi")[0];
    assert!(watches("AWS/ApiGateway", "5xx", api), "no alarm on API 5xx");
    let (table, _) = resources_of_type(&template, "AWS::DynamoDB::Table")[0];
    for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
        assert!(
            watches("AWS/DynamoDB", metric, table),
            "no alarm on {metric}"
        );
    }
    assert!(
        alarms
            .iter()
            .any(|(ns, name, _)| ns == shared::metrics::NAMESPACE
                && name == shared::metrics::ATTEMPT_WRITE_FAILURES),
        "no alarm on the dispatcher's unrecorded attempts"
    );
}

#[test]
fn the_dashboard_shows_every_metric_the_code_writes_and_every_function() {
    let template = template();
    let dashboards = resources_of_type(&template, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let body = dashboards[0].1["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("the dashboard body is a !Sub string");
    // What CloudFormation substitutes, each `${…}` a name, must leave valid JSON.
    let mut substituted = String::new();
    let mut rest = body;
    let mut references = BTreeSet::new();
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("a closed ${…}") + start;
        substituted.push_str(&rest[..start]);
        let name = &rest[start + 2..end];
        references.insert(name.split('.').next().unwrap_or(name).to_string());
        substituted.push_str("substituted");
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    let body: Value = serde_json::from_str(&substituted)
        .unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}"));
    let shown: BTreeSet<(String, String)> = body["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .flat_map(|w| {
            w["properties"]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|m| (scalar_text(&m[0]), scalar_text(&m[1])))
        .collect();
    use shared::metrics::*;
    for metric in [
        DELIVERIES,
        ATTEMPT_DURATION,
        DELIVERY_LATENCY,
        ATTEMPT_WRITE_FAILURES,
        FAN_OUT_SIZE,
        DEAD_LETTERED,
        ISOLATION_DECISIONS,
    ] {
        assert!(
            shown.contains(&(NAMESPACE.to_string(), metric.to_string())),
            "the dashboard lacks {metric}"
        );
    }
    for (name, _) in functions(&template) {
        assert!(references.contains(name), "the dashboard lacks {name}");
    }
}

/// `make package` ends with `make lambda-sizes`, which fails when a zip is over the
/// 4 MB each function is held to (`docs/performance.md`).
#[test]
fn a_zip_over_4_mb_fails_the_package() {
    let dir = std::env::temp_dir().join(format!("hookline-zips-{}", std::process::id()));
    let sizes = |api_bytes: usize| {
        for binary in function_binaries() {
            let bytes = if binary == "api" { api_bytes } else { 1000 };
            std::fs::create_dir_all(dir.join(&binary)).unwrap();
            std::fs::write(dir.join(&binary).join("bootstrap.zip"), vec![0; bytes]).unwrap();
        }
        std::process::Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(workspace_root())
            .arg("lambda-sizes")
            .arg(format!("LAMBDA_DIR={}", dir.display()))
            .output()
            .expect("make runs")
    };
    let within = sizes(4_000_000);
    assert!(within.status.success(), "{within:?}");
    assert!(String::from_utf8_lossy(&within.stdout).contains(" 4000000 bytes"));
    let over = sizes(4_000_001);
    assert!(!over.status.success());
    assert!(
        String::from_utf8_lossy(&over.stderr).contains("api/bootstrap.zip is over 4000000 bytes"),
        "{over:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

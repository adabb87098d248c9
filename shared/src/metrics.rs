//! Metrics as CloudWatch embedded-metric-format (EMF) lines: JSON objects written to
//! the function's log, which CloudWatch turns into metrics with no call of ours.
//! The formatting is pure; [`Tally`] gathers one invocation's figures so a batch of
//! deliveries costs a few log lines, not one per delivery; [`emit`] writes lines.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every hookline metric.
pub const NAMESPACE: &str = "hookline";
/// EMF takes at most 100 values per metric in one line.
pub const MAX_VALUES: usize = 100;

/// Metric names, as the template's dashboard and alarms name them too.
pub const DELIVERIES: &str = "Deliveries";
pub const ATTEMPT_DURATION: &str = "AttemptDuration";
pub const DELIVERY_LATENCY: &str = "DeliveryLatency";
pub const ATTEMPT_WRITE_FAILURES: &str = "AttemptWriteFailures";
pub const FAN_OUT_SIZE: &str = "FanOutSize";
pub const DEAD_LETTERED: &str = "DeadLettered";
pub const ISOLATION_DECISIONS: &str = "IsolationDecisions";

/// Dimension names.
pub const OUTCOME: &str = "Outcome";
pub const FAILURE_KIND: &str = "FailureKind";
pub const LANE: &str = "Lane";
pub const REASON: &str = "Reason";
pub const DECISION: &str = "Decision";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric of a line: its name, unit and values (empty: left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub unit: Unit,
    pub values: Vec<f64>,
}

/// One EMF line: `dimensions` are its properties, published under each of
/// `dimension_sets` (lists of their names); each metric's values are one number or,
/// when several, an array of at most [`MAX_VALUES`] (the rest is cut).
pub fn line(
    timestamp_ms: u64,
    dimensions: &[(&str, &str)],
    dimension_sets: &[&[&str]],
    metrics: &[Metric<'_>],
) -> String {
    let metrics: Vec<&Metric> = metrics.iter().filter(|m| !m.values.is_empty()).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": metrics
                    .iter()
                    .map(|m| json!({"Name": m.name, "Unit": m.unit.as_str()}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), Value::from(*value));
    }
    for metric in metrics {
        let values = &metric.values[..metric.values.len().min(MAX_VALUES)];
        let value = match values {
            [one] => json!(one),
            many => json!(many),
        };
        root.insert(metric.name.into(), value);
    }
    Value::Object(root).to_string()
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Not attempted: its endpoint was deleted or disabled, or its message is gone.
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

/// Why an attempt failed, in the few classes an operator tells apart: no answer in
/// time, no connection, or the class of the status.
pub fn failure_kind(status: Option<u16>, timed_out: bool) -> &'static str {
    match status {
        _ if timed_out => "timeout",
        None => "connection",
        Some(429) => "429",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
    }
}

/// One delivery attempt's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub outcome: Outcome,
    /// [`failure_kind`] of a failed attempt.
    pub failure_kind: Option<&'static str>,
    /// The queue it came from: `main` or `slow`.
    pub lane: &'static str,
    pub attempt_ms: u64,
    /// From the job's enqueueing to its successful delivery.
    pub latency_ms: Option<u64>,
}

/// One line per outcome, failure kind and lane among `deliveries`: their count, attempt
/// durations and, for successes, latencies. Counted by outcome, by outcome and lane,
/// and (failures) by failure kind.
pub fn deliveries(timestamp_ms: u64, deliveries: &[Delivery]) -> Vec<String> {
    let mut groups: BTreeMap<(Outcome, &str, &str), Vec<&Delivery>> = BTreeMap::new();
    for delivery in deliveries {
        let kind = delivery.failure_kind.unwrap_or("");
        groups
            .entry((delivery.outcome, kind, delivery.lane))
            .or_default()
            .push(delivery);
    }
    let mut lines = Vec::new();
    for ((outcome, kind, lane), group) in groups {
        for chunk in group.chunks(MAX_VALUES) {
            let mut dimensions = vec![(OUTCOME, outcome.as_str()), (LANE, lane)];
            let mut sets: Vec<&[&str]> = vec![&[OUTCOME], &[OUTCOME, LANE]];
            if !kind.is_empty() {
                dimensions.push((FAILURE_KIND, kind));
                sets.push(&[FAILURE_KIND]);
            }
            let values = |f: fn(&Delivery) -> Option<u64>| -> Vec<f64> {
                chunk
                    .iter()
                    .filter_map(|d| f(d))
                    .map(|v| v as f64)
                    .collect()
            };
            lines.push(line(
                timestamp_ms,
                &dimensions,
                &sets,
                &[
                    Metric {
                        name: DELIVERIES,
                        unit: Unit::Count,
                        values: vec![chunk.len() as f64],
                    },
                    Metric {
                        name: ATTEMPT_DURATION,
                        unit: Unit::Milliseconds,
                        values: values(|d| Some(d.attempt_ms)),
                    },
                    Metric {
                        name: DELIVERY_LATENCY,
                        unit: Unit::Milliseconds,
                        values: values(|d| d.latency_ms),
                    },
                ],
            ));
        }
    }
    lines
}

/// A count under one dimension, or under none when `dimension` is `None`.
pub fn count(timestamp_ms: u64, name: &str, dimension: Option<(&str, &str)>, count: u64) -> String {
    let dimensions: Vec<(&str, &str)> = dimension.into_iter().collect();
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    line(
        timestamp_ms,
        &dimensions,
        &[&names],
        &[Metric {
            name,
            unit: Unit::Count,
            values: vec![count as f64],
        }],
    )
}

/// The number of endpoints each event of a request fans out to.
pub fn fan_out(timestamp_ms: u64, sizes: &[usize]) -> Vec<String> {
    sizes
        .chunks(MAX_VALUES)
        .map(|chunk| {
            line(
                timestamp_ms,
                &[],
                &[&[]],
                &[Metric {
                    name: FAN_OUT_SIZE,
                    unit: Unit::Count,
                    values: chunk.iter().map(|&size| size as f64).collect(),
                }],
            )
        })
        .collect()
}

/// Milliseconds since the Unix epoch, as EMF's `Timestamp` wants.
pub fn now_ms() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Writes lines to stdout, each whole, where Lambda sends a function's log.
pub fn emit(lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// One invocation's figures, gathered as they happen and written at its end.
#[derive(Debug, Default)]
pub struct Tally {
    inner: Mutex<Counts>,
}

/// A dimension's name and value.
pub type Dimension = (&'static str, &'static str);

#[derive(Debug, Default)]
struct Counts {
    deliveries: Vec<Delivery>,
    /// (metric, dimension) → count.
    counts: BTreeMap<(&'static str, Option<Dimension>), u64>,
}

impl Tally {
    pub fn delivery(&self, delivery: Delivery) {
        self.lock().deliveries.push(delivery);
    }

    /// Adds one to `name` (under `dimension`, if any).
    pub fn add(&self, name: &'static str, dimension: Option<Dimension>) {
        *self.lock().counts.entry((name, dimension)).or_default() += 1;
    }

    /// The lines of what was gathered since the last take, which starts afresh.
    pub fn take_lines(&self, timestamp_ms: u64) -> Vec<String> {
        let Counts {
            deliveries: gathered,
            counts,
        } = std::mem::take(&mut *self.lock());
        let mut lines = deliveries(timestamp_ms, &gathered);
        lines.extend(
            counts
                .into_iter()
                .map(|((name, dimension), n)| count(timestamp_ms, name, dimension, n)),
        );
        lines
    }

    /// Writes what was gathered (see [`Tally::take_lines`]).
    pub fn flush(&self) {
        emit(&self.take_lines(now_ms()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An EMF line read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Each metric's name and unit.
    pub metrics: Vec<(String, String)>,
    pub dimension_sets: Vec<Vec<String>>,
    /// The whole object: dimension values and metric values by name.
    pub root: Map<String, Value>,
}

/// Reads an EMF line of this namespace back; `None` when it is not one, or names a
/// metric or dimension it does not carry. For tests, and for reading logs.
pub fn parse(line: &str) -> Option<Parsed> {
    let root: Map<String, Value> = serde_json::from_str(line).ok()?;
    let directive = root.get("_aws")?.get("CloudWatchMetrics")?.get(0)?;
    if directive.get("Namespace")? != NAMESPACE {
        return None;
    }
    root.get("_aws")?.get("Timestamp")?.as_u64()?;
    let metrics = directive
        .get("Metrics")?
        .as_array()?
        .iter()
        .map(|m| {
            Some((
                m.get("Name")?.as_str()?.to_string(),
                m.get("Unit")?.as_str()?.to_string(),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    let sets = directive
        .get("Dimensions")?
        .as_array()?
        .iter()
        .map(|set| {
            set.as_array()?
                .iter()
                .map(|name| name.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .collect::<Option<Vec<_>>>()?;
    // Every metric and every dimension named must be a member of the root.
    let present = |name: &String| root.contains_key(name);
    if !metrics.iter().all(|(name, _)| present(name)) || !sets.iter().flatten().all(present) {
        return None;
    }
    Some(Parsed {
        metrics,
        dimension_sets: sets,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success(ms: u64) -> Delivery {
        Delivery {
            outcome: Outcome::Succeeded,
            failure_kind: None,
            lane: "main",
            attempt_ms: ms,
            latency_ms: Some(ms + 100),
        }
    }

    #[test]
    fn a_line_is_emf_that_reads_back() {
        let text = line(
            1_700_000_000_000,
            &[(OUTCOME, "succeeded")],
            &[&[OUTCOME]],
            &[
                Metric {
                    name: DELIVERIES,
                    unit: Unit::Count,
                    values: vec![3.0],
                },
                Metric {
                    name: ATTEMPT_DURATION,
                    unit: Unit::Milliseconds,
                    values: vec![12.0, 40.0],
                },
                Metric {
                    name: DELIVERY_LATENCY,
                    unit: Unit::Milliseconds,
                    values: vec![],
                },
            ],
        );
        assert!(!text.contains('\n'), "one log line");
        let Parsed {
            metrics,
            dimension_sets: sets,
            root,
        } = parse(&text).expect("an EMF line");
        assert_eq!(
            metrics,
            [
                (DELIVERIES.to_string(), "Count".to_string()),
                (ATTEMPT_DURATION.to_string(), "Milliseconds".to_string())
            ]
        );
        assert_eq!(sets, [vec![OUTCOME.to_string()]]);
        assert_eq!(root[DELIVERIES], json!(3.0));
        assert_eq!(root[ATTEMPT_DURATION], json!([12.0, 40.0]));
        assert_eq!(root[OUTCOME], "succeeded");
        assert_eq!(root["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert!(!root.contains_key(DELIVERY_LATENCY), "no values, no metric");
    }

    #[test]
    fn failures_are_classed() {
        assert_eq!(failure_kind(None, true), "timeout");
        assert_eq!(
            failure_kind(Some(200), true),
            "timeout",
            "a body that never ended"
        );
        assert_eq!(failure_kind(None, false), "connection");
        assert_eq!(failure_kind(Some(429), false), "429");
        assert_eq!(failure_kind(Some(302), false), "3xx");
        assert_eq!(failure_kind(Some(410), false), "4xx");
        assert_eq!(failure_kind(Some(503), false), "5xx");
        assert_eq!(failure_kind(Some(102), false), "other");
    }

    #[test]
    fn deliveries_are_grouped_by_outcome_kind_and_lane() {
        let timeout = Delivery {
            outcome: Outcome::Failed,
            failure_kind: Some("timeout"),
            lane: "slow",
            attempt_ms: 3000,
            latency_ms: None,
        };
        let lines = deliveries(1, &[success(10), timeout.clone(), success(30), timeout]);
        assert_eq!(lines.len(), 2);
        let parsed: Vec<_> = lines.iter().map(|l| parse(l).expect("EMF")).collect();
        let (sets, ok) = (&parsed[0].dimension_sets, &parsed[0].root);
        assert_eq!(ok[OUTCOME], "succeeded");
        assert_eq!(ok[DELIVERIES], json!(2.0));
        assert_eq!(ok[ATTEMPT_DURATION], json!([10.0, 30.0]));
        assert_eq!(ok[DELIVERY_LATENCY], json!([110.0, 130.0]));
        assert!(!sets.iter().flatten().any(|d| d == FAILURE_KIND));
        let (metrics, sets, failed) = (
            &parsed[1].metrics,
            &parsed[1].dimension_sets,
            &parsed[1].root,
        );
        assert_eq!(
            (&failed[OUTCOME], &failed[FAILURE_KIND], &failed[LANE]),
            (&json!("failed"), &json!("timeout"), &json!("slow"))
        );
        assert_eq!(failed[DELIVERIES], json!(2.0));
        assert!(sets.contains(&vec![FAILURE_KIND.to_string()]));
        assert!(!metrics.iter().any(|(name, _)| name == DELIVERY_LATENCY));
    }

    #[test]
    fn many_values_split_into_lines_of_at_most_a_hundred() {
        let lines = fan_out(1, &[2; 150]);
        assert_eq!(lines.len(), 2);
        let first = parse(&lines[0]).unwrap();
        assert_eq!(first.root[FAN_OUT_SIZE].as_array().unwrap().len(), 100);
        assert_eq!(
            first.dimension_sets,
            [Vec::<String>::new()],
            "no dimensions"
        );
        let many: Vec<Delivery> = (0..120).map(success).collect();
        let lines = deliveries(1, &many);
        assert_eq!(lines.len(), 2);
        let first = parse(&lines[0]).unwrap().root;
        assert_eq!(first[DELIVERIES], json!(100.0));
    }

    #[test]
    fn a_tally_writes_what_it_gathered_once() {
        let tally = Tally::default();
        tally.delivery(success(5));
        tally.add(ATTEMPT_WRITE_FAILURES, None);
        tally.add(ATTEMPT_WRITE_FAILURES, None);
        tally.add(DEAD_LETTERED, Some((REASON, "exhausted")));
        let lines = tally.take_lines(7);
        assert_eq!(lines.len(), 3);
        let roots: Vec<_> = lines.iter().map(|l| parse(l).unwrap().root).collect();
        assert_eq!(roots[1][ATTEMPT_WRITE_FAILURES], json!(2.0));
        assert_eq!(roots[2][DEAD_LETTERED], json!(1.0));
        assert_eq!(roots[2][REASON], "exhausted");
        assert!(tally.take_lines(8).is_empty(), "taken once");
    }

    #[test]
    fn other_lines_are_not_emf() {
        assert!(parse(r#"{"level":"INFO","message":"delivered"}"#).is_none());
        assert!(parse("delivered").is_none());
        // A metric it names but does not carry.
        assert!(parse(r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"hookline","Dimensions":[[]],"Metrics":[{"Name":"X","Unit":"Count"}]}]}}"#).is_none());
    }
}

//! IAM as the template grants it and as AWS checks it: each function role's
//! statements resolved to the ARNs of the resources `hookline dev` makes, the
//! policy moto can enforce for them, and the authorizations AWS makes for each
//! call the emulator recorded.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use hookline_cli::local::{DELIVERY_QUEUE, DLQ, SLOW_QUEUE, TABLE};
use serde_json::{Value, json};

use crate::template::{function_property, functions, resources};

/// moto's default account, which owns every resource it makes.
pub const ACCOUNT: &str = "123456789012";
const REGION: &str = shared::aws::EMULATOR_REGION;

/// One Allow statement of a role, with its resources resolved to ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub sid: String,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

impl Grant {
    fn allows(&self, action: &str, resource: &str) -> bool {
        self.actions.iter().any(|a| action_matches(a, action))
            && self.resources.iter().any(|r| glob(r, resource))
    }
}

/// One check AWS makes for a call: the caller may do `action` on `resource`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Authorization {
    pub action: String,
    pub resource: String,
}

/// Action names compare without regard to case.
fn action_matches(pattern: &str, action: &str) -> bool {
    glob(&pattern.to_lowercase(), &action.to_lowercase())
}

/// IAM's wildcards: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // matched[j]: the pattern so far matches text[..j].
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    for p in pattern {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match p {
                '*' => matched[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && matched[j - 1],
                c => j > 0 && matched[j - 1] && text[j - 1] == c,
            };
        }
        matched = next;
    }
    matched[text.len()]
}

pub fn table_arn(table: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}")
}

pub fn queue_arn(queue: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}")
}

/// The ARN of a template resource, as `hookline dev` names it.
fn arn_of(template: &Value, logical_id: &str) -> String {
    let resource = &resources(template)[logical_id];
    match resource["Type"].as_str() {
        Some("AWS::DynamoDB::Table") => table_arn(TABLE),
        Some("AWS::SQS::Queue") => {
            let delivery = crate::template::delivery_queue(template);
            if std::ptr::eq(resource, delivery) {
                return queue_arn(DELIVERY_QUEUE);
            }
            let (slow_lane, _) =
                crate::template::queue_named_by(template, shared::config::SLOW_QUEUE_URL);
            if logical_id == slow_lane {
                return queue_arn(SLOW_QUEUE);
            }
            let dead_letters = &delivery["Properties"]["RedrivePolicy"]["deadLetterTargetArn"];
            assert_eq!(
                dead_letters["Fn::GetAtt"][0], logical_id,
                "queue {logical_id} is neither the delivery queue nor its DLQ: name it here"
            );
            queue_arn(DLQ)
        }
        Some("AWS::Logs::LogGroup") => {
            format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{logical_id}")
        }
        other => panic!("no local ARN for {logical_id} of type {other:?}"),
    }
}

/// A statement's `Resource` entry: an ARN, `!GetAtt X.Arn`, or `!Sub` over those.
fn resolve(template: &Value, value: &Value) -> String {
    if let Some(text) = value.as_str() {
        return text.to_string();
    }
    if let Some([logical_id, attribute]) = value["Fn::GetAtt"].as_array().map(Vec::as_slice) {
        assert_eq!(attribute, "Arn", "only !GetAtt X.Arn is resolved: {value}");
        return arn_of(template, logical_id.as_str().expect("a logical id"));
    }
    // `!Sub [text, {Name: …}]`: a name given a parameter's value here stands for any value.
    let (text, given) = match &value["Fn::Sub"] {
        Value::Array(parts) => (parts.first().and_then(Value::as_str), parts.get(1)),
        sub => (sub.as_str(), None),
    };
    if let Some(text) = text {
        let mut resolved = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let end = rest[start..].find('}').expect("a closed ${…}") + start;
            resolved.push_str(&rest[..start]);
            let name = &rest[start + 2..end];
            resolved.push_str(&match name {
                "AWS::Region" => REGION.to_string(),
                "AWS::AccountId" => ACCOUNT.to_string(),
                "AWS::Partition" => "aws".to_string(),
                name if given.is_some_and(|given| given.get(name).is_some()) => "*".to_string(),
                _ => {
                    let logical_id = name
                        .strip_suffix(".Arn")
                        .unwrap_or_else(|| panic!("cannot resolve ${{{name}}} in {text}"));
                    arn_of(template, logical_id)
                }
            });
            rest = &rest[end + 1..];
        }
        resolved.push_str(rest);
        return resolved;
    }
    panic!("cannot resolve the resource {value}")
}

fn strings(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        single => vec![single],
    }
}

/// Each function's role statements, by the binary the function runs.
pub fn role_grants(template: &Value) -> BTreeMap<String, Vec<Grant>> {
    let mut by_function = BTreeMap::new();
    for (name, function) in functions(template) {
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} names no binary"))
            .to_string();
        let role = function_property(template, function, "Role")["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{name}'s role is not one of the template's"));
        let mut grants = Vec::new();
        for policy in strings(&resources(template)[role]["Properties"]["Policies"]) {
            for statement in strings(&policy["PolicyDocument"]["Statement"]) {
                assert_eq!(
                    statement["Effect"], "Allow",
                    "{role}: only Allow statements are read here"
                );
                assert!(
                    statement.get("Condition").is_none() && statement.get("NotAction").is_none(),
                    "{role}: a Condition or NotAction is not read here"
                );
                grants.push(Grant {
                    sid: statement["Sid"].as_str().unwrap_or_default().to_string(),
                    actions: strings(&statement["Action"])
                        .into_iter()
                        .map(|a| a.as_str().expect("an action is text").to_string())
                        .collect(),
                    resources: strings(&statement["Resource"])
                        .into_iter()
                        .map(|r| resolve(template, r))
                        .collect(),
                });
            }
        }
        by_function.insert(binary, grants);
    }
    by_function
}

/// The operation names moto checks in place of the action AWS checks: moto
/// asks for the operation itself (`sqs:SendMessageBatch`, `dynamodb:TransactWriteItems`)
/// where AWS asks for the per-entry action, which the recording check holds exactly.
fn moto_names(action: &str) -> Vec<String> {
    let twins: &[&str] = match action {
        "sqs:SendMessage" => &["sqs:SendMessageBatch"],
        "sqs:DeleteMessage" => &["sqs:DeleteMessageBatch"],
        "sqs:ChangeMessageVisibility" => &["sqs:ChangeMessageVisibilityBatch"],
        "dynamodb:PutItem"
        | "dynamodb:UpdateItem"
        | "dynamodb:DeleteItem"
        | "dynamodb:ConditionCheckItem" => &["dynamodb:TransactWriteItems"],
        "dynamodb:GetItem" => &["dynamodb:TransactGetItems"],
        _ => &[],
    };
    std::iter::once(action)
        .chain(twins.iter().copied())
        .map(str::to_string)
        .collect()
}

/// The policy moto enforces for `grants`. moto checks SQS calls against the
/// queue's ARN, as AWS does, but every DynamoDB and SES call against `*`: such a
/// statement keeps its actions and, for moto only, covers every resource. Which
/// table and index each call touched is checked from the recording instead.
pub fn moto_policy(grants: &[Grant]) -> Value {
    let statements: Vec<Value> = grants
        .iter()
        .map(|grant| {
            let dynamodb = grant
                .actions
                .iter()
                .any(|a| a.starts_with("dynamodb:") || a.starts_with("ses:"));
            let actions: BTreeSet<String> =
                grant.actions.iter().flat_map(|a| moto_names(a)).collect();
            json!({
                "Effect": "Allow",
                "Action": actions,
                "Resource": if dynamodb { json!("*") } else { json!(grant.resources) },
            })
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The checks AWS makes for one call: its operation (`X-Amz-Target`, e.g.
/// `DynamoDB_20120810.Query` or `AmazonSQS.SendMessageBatch`) and JSON body.
pub fn authorizations(target: &str, body: &Value) -> Vec<Authorization> {
    let check = |action: String, resource: String| Authorization { action, resource };
    let (service, operation) = target
        .split_once('.')
        .expect("a target is Service.Operation");
    if service.starts_with("DynamoDB") {
        let table =
            |item: &Value| table_arn(item["TableName"].as_str().expect("a call names its table"));
        let action = |name: &str| format!("dynamodb:{name}");
        return match operation {
            // A transaction is checked item by item, each with its own action.
            "TransactWriteItems" | "TransactGetItems" => body["TransactItems"]
                .as_array()
                .expect("TransactItems")
                .iter()
                .flat_map(|item| item.as_object().expect("one kind per item"))
                .map(|(kind, item)| {
                    let name = match kind.as_str() {
                        "Put" => "PutItem",
                        "Update" => "UpdateItem",
                        "Delete" => "DeleteItem",
                        "ConditionCheck" => "ConditionCheckItem",
                        "Get" => "GetItem",
                        other => panic!("unknown transaction item {other}"),
                    };
                    check(action(name), table(item))
                })
                .collect(),
            "BatchGetItem" | "BatchWriteItem" => body["RequestItems"]
                .as_object()
                .expect("RequestItems")
                .keys()
                .map(|name| check(action(operation), table_arn(name)))
                .collect(),
            _ => {
                let mut resource = table(body);
                if let Some(index) = body["IndexName"].as_str() {
                    resource = format!("{resource}/index/{index}");
                }
                vec![check(action(operation), resource)]
            }
        };
    }
    if service == "AmazonSQS" {
        // A batch call needs the permission of its single form.
        let single = match operation {
            "SendMessageBatch" | "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" => {
                operation.trim_end_matches("Batch")
            }
            other => other,
        };
        let queue = body["QueueUrl"]
            .as_str()
            .and_then(|url| url.rsplit('/').next())
            .map(queue_arn)
            .unwrap_or_else(|| "*".into());
        return vec![check(format!("sqs:{single}"), queue)];
    }
    vec![check(format!("{service}:{operation}"), "*".into())]
}

/// One call from moto's request recording: who signed it, and what AWS checks for it.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub access_key_id: String,
    pub operation: String,
    pub authorizations: Vec<Authorization>,
}

/// The AWS calls in moto's recording (one JSON request per line); its own
/// `/moto-api` calls and unsigned requests are left out.
pub fn recorded_calls(recording: &str) -> Vec<RecordedCall> {
    let mut calls = Vec::new();
    for line in recording.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).expect("a recorded request is JSON");
        let header = |name: &str| {
            entry["headers"]
                .as_object()
                .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                .and_then(|(_, v)| v.as_str())
        };
        let (Some(authorization), Some(target)) = (header("authorization"), header("x-amz-target"))
        else {
            continue;
        };
        let access_key_id = authorization
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').next())
            .expect("a signed request names its key")
            .to_string();
        let text = entry["body"].as_str().unwrap_or_default();
        let bytes = if entry["body_encoded"] == true {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("an encoded body is base64")
        } else {
            text.as_bytes().to_vec()
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        calls.push(RecordedCall {
            access_key_id,
            operation: target.to_string(),
            authorizations: authorizations(target, &body),
        });
    }
    calls
}

/// Grants the run cannot show in use, with why each stays: AWS itself uses
/// them with a function's role, or only a fault takes the path that does.
/// (Lambda's event source mapping also receives and deletes through the
/// dispatcher's role, which `hookline dev`'s event source does with its key.)
pub fn used_outside_the_run(function: &str, action: &str) -> Option<&'static str> {
    match (function, action) {
        (_, "logs:CreateLogStream" | "logs:PutLogEvents") => Some("Lambda writes the logs"),
        ("dispatcher", "sqs:GetQueueAttributes") => {
            Some("Lambda's SQS event source mapping reads the queue's attributes")
        }
        ("scheduler", "ses:SendEmail") => Some(
            "the emulator allows or refuses SES calls but does not record them (they carry no X-Amz-Target)",
        ),
        ("ingest", "dynamodb:DeleteItem") => {
            Some("a failed fan-out takes its message or idempotency claim back")
        }
        _ => None,
    }
}

/// What `needed` lacks from `grants`, and which granted actions and resources
/// nothing in `needed` (nor Lambda) used.
pub fn compare(
    function: &str,
    grants: &[Grant],
    needed: &BTreeSet<Authorization>,
) -> (Vec<Authorization>, Vec<String>) {
    let denied = needed
        .iter()
        .filter(|n| !grants.iter().any(|g| g.allows(&n.action, &n.resource)))
        .cloned()
        .collect();
    let mut unused = Vec::new();
    for grant in grants {
        for action in &grant.actions {
            let used = used_outside_the_run(function, action).is_some()
                || needed.iter().any(|n| {
                    action_matches(action, &n.action)
                        && grant.resources.iter().any(|r| glob(r, &n.resource))
                });
            if !used {
                unused.push(format!("{} {action}", grant.sid));
            }
        }
        for resource in &grant.resources {
            let used = grant
                .actions
                .iter()
                .any(|a| used_outside_the_run(function, a).is_some())
                || needed.iter().any(|n| {
                    glob(resource, &n.resource)
                        && grant.actions.iter().any(|a| action_matches(a, &n.action))
                });
            if !used {
                unused.push(format!("{} on {resource}", grant.sid));
            }
        }
    }
    (denied, unused)
}

/// An IAM user's access key at the emulator. No `Debug`: it holds a secret.
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Makes an IAM user at `emulator` with `policy` inline and returns its new key.
/// Called before moto enforces IAM: its IAM API then takes unsigned requests,
/// routed by the service the `Authorization` header names.
pub async fn create_user(emulator: &str, name: &str, policy: &Value) -> AccessKey {
    let client = reqwest::Client::new();
    let call = |params: Vec<(&str, String)>| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Version", "2010-05-08")
            .extend_pairs(params)
            .finish();
        let request = client
            .post(emulator)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=setup/20260101/{REGION}/iam/aws4_request, SignedHeaders=host, Signature=none"),
            )
            .body(body);
        async move {
            let response = request.send().await.expect("the emulator answers");
            let status = response.status();
            let text = response.text().await.expect("an IAM answer");
            assert!(status.is_success(), "IAM setup failed: {status} {text}");
            text
        }
    };
    call(vec![
        ("Action", "CreateUser".into()),
        ("UserName", name.into()),
    ])
    .await;
    call(vec![
        ("Action", "PutUserPolicy".into()),
        ("UserName", name.into()),
        ("PolicyName", name.into()),
        ("PolicyDocument", policy.to_string()),
    ])
    .await;
    let answer = call(vec![
        ("Action", "CreateAccessKey".into()),
        ("UserName", name.into()),
    ])
    .await;
    let element = |tag: &str| {
        let open = format!("<{tag}>");
        let start = answer.find(&open).expect("the key is in the answer") + open.len();
        let end = answer[start..].find('<').expect("a closed element") + start;
        answer[start..end].to_string()
    };
    AccessKey {
        access_key_id: element("AccessKeyId"),
        secret_access_key: element("SecretAccessKey"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(glob("arn:t/index/*", "arn:t/index/gsi1"));
        assert!(!glob("arn:t/index/*", "arn:t"));
        assert!(glob("sqs:*", "sqs:SendMessage"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("arn:t", "*"));
    }

    #[test]
    fn a_call_is_checked_as_aws_checks_it() {
        let transaction = json!({"TransactItems": [
            {"Put": {"TableName": "t"}},
            {"ConditionCheck": {"TableName": "t"}},
        ]});
        let actions: Vec<String> =
            authorizations("DynamoDB_20120810.TransactWriteItems", &transaction)
                .into_iter()
                .map(|a| a.action)
                .collect();
        assert_eq!(actions, ["dynamodb:PutItem", "dynamodb:ConditionCheckItem"]);

        let query = json!({"TableName": "t", "IndexName": "gsi1"});
        assert_eq!(
            authorizations("DynamoDB_20120810.Query", &query)[0].resource,
            format!("{}/index/gsi1", table_arn("t"))
        );
        let batch = json!({"QueueUrl": "http://127.0.0.1:1/123456789012/q"});
        assert_eq!(
            authorizations("AmazonSQS.DeleteMessageBatch", &batch),
            [Authorization {
                action: "sqs:DeleteMessage".into(),
                resource: queue_arn("q"),
            }]
        );
    }

    #[test]
    fn unused_and_missing_grants_are_named() {
        let grants = [Grant {
            sid: "Table".into(),
            actions: vec!["dynamodb:GetItem".into(), "dynamodb:DeleteItem".into()],
            resources: vec![table_arn("t"), format!("{}/index/*", table_arn("t"))],
        }];
        let needed = BTreeSet::from([
            Authorization {
                action: "dynamodb:GetItem".into(),
                resource: table_arn("t"),
            },
            Authorization {
                action: "dynamodb:Query".into(),
                resource: table_arn("t"),
            },
        ]);
        let (denied, unused) = compare("api", &grants, &needed);
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].action, "dynamodb:Query");
        assert_eq!(
            unused,
            [
                "Table dynamodb:DeleteItem".to_string(),
                format!("Table on {}/index/*", table_arn("t"))
            ]
        );
    }
}

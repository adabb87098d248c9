//! DynamoDB capacity units as DynamoDB bills them on demand, worked out at the
//! counting proxy: moto answers `ReturnConsumedCapacity` with fixed figures, so the
//! units come from item sizes instead. A write costs one write unit per started
//! KiB of the larger of the item before and after it (two in a transaction), plus,
//! for each global secondary index whose entry it adds, changes or removes, one per
//! started KiB of that entry (its projected attributes and 100 bytes); the proxy
//! reads each written item straight from the emulator before and after the call.
//! A read costs one read unit per started 4 KiB (half for an eventually
//! consistent one): per item for GetItem and BatchGetItem (at least one, found or
//! not), over all the items returned for Query and Scan. Items are sized as
//! DynamoDB documents it: attribute names plus values.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// Read and write units, as DynamoDB bills them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
}

impl std::ops::AddAssign for Units {
    fn add_assign(&mut self, other: Self) {
        self.read += other.read;
        self.write += other.write;
    }
}

impl std::ops::Sub for Units {
    type Output = Self;
    fn sub(self, other: Self) -> Self {
        Self {
            read: self.read - other.read,
            write: self.write - other.write,
        }
    }
}

/// What an index keeps of an item.
#[derive(Debug, Clone, PartialEq)]
enum Projection {
    All,
    /// The table's and the index's keys, and these attributes.
    Include(Vec<String>),
}

#[derive(Debug, Clone)]
struct Index {
    keys: Vec<String>,
    projection: Projection,
}

#[derive(Debug, Clone)]
struct Table {
    keys: Vec<String>,
    indexes: Vec<Index>,
}

/// The tables the proxy saw created, by name.
#[derive(Default)]
pub struct Tables(Mutex<HashMap<String, Table>>);

/// One item a call writes: its table, key, and whether it is part of a transaction.
#[derive(Debug, Clone)]
pub struct Written {
    table: String,
    key: Map<String, Value>,
    transactional: bool,
    /// A `ConditionCheck`: read with write units, changes nothing.
    check_only: bool,
}

impl Tables {
    /// Learns a table's keys and indexes from its `CreateTable` request.
    pub fn learn(&self, request: &Value) {
        let names = |schema: &Value| -> Vec<String> {
            schema
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k["AttributeName"].as_str().map(str::to_string))
                .collect()
        };
        let Some(name) = request["TableName"].as_str() else {
            return;
        };
        let indexes = request["GlobalSecondaryIndexes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|index| Index {
                keys: names(&index["KeySchema"]),
                projection: match index["Projection"]["ProjectionType"].as_str() {
                    Some("ALL") | None => Projection::All,
                    _ => Projection::Include(
                        index["Projection"]["NonKeyAttributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a.as_str().map(str::to_string))
                            .collect(),
                    ),
                },
            })
            .collect();
        let table = Table {
            keys: names(&request["KeySchema"]),
            indexes,
        };
        self.0
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), table);
    }

    fn table(&self, name: &str) -> Option<Table> {
        self.0.lock().expect("not poisoned").get(name).cloned()
    }

    /// The items a write call touches, to be read before and after it.
    pub fn written(&self, operation: &str, request: &Value) -> Vec<Written> {
        let mut written = Vec::new();
        let mut add = |table: &Value, key: Map<String, Value>, transactional, check_only| {
            if let Some(table) = table.as_str() {
                written.push(Written {
                    table: table.to_string(),
                    key,
                    transactional,
                    check_only,
                });
            }
        };
        match operation {
            "PutItem" => {
                if let Some(key) = self.key_of(&request["TableName"], &request["Item"]) {
                    add(&request["TableName"], key, false, false);
                }
            }
            "UpdateItem" | "DeleteItem" => {
                if let Some(key) = request["Key"].as_object() {
                    add(&request["TableName"], key.clone(), false, false);
                }
            }
            "BatchWriteItem" => {
                for (table, requests) in request["RequestItems"].as_object().into_iter().flatten() {
                    let table = Value::String(table.clone());
                    for write in requests.as_array().into_iter().flatten() {
                        let key = match (write.get("PutRequest"), write.get("DeleteRequest")) {
                            (Some(put), _) => self.key_of(&table, &put["Item"]),
                            (_, Some(delete)) => delete["Key"].as_object().cloned(),
                            _ => None,
                        };
                        if let Some(key) = key {
                            add(&table, key, false, false);
                        }
                    }
                }
            }
            "TransactWriteItems" => {
                for item in request["TransactItems"].as_array().into_iter().flatten() {
                    let Some((kind, action)) = item.as_object().and_then(|o| o.iter().next())
                    else {
                        continue;
                    };
                    let key = match kind.as_str() {
                        "Put" => self.key_of(&action["TableName"], &action["Item"]),
                        _ => action["Key"].as_object().cloned(),
                    };
                    if let Some(key) = key {
                        add(&action["TableName"], key, true, kind == "ConditionCheck");
                    }
                }
            }
            _ => {}
        }
        written
    }

    fn key_of(&self, table: &Value, item: &Value) -> Option<Map<String, Value>> {
        let table = self.table(table.as_str()?)?;
        let item = item.as_object()?;
        table
            .keys
            .iter()
            .map(|k| Some((k.clone(), item.get(k)?.clone())))
            .collect()
    }

    /// The write units of one written item, from its images before and after.
    pub fn write_units(
        &self,
        written: &Written,
        before: Option<&Map<String, Value>>,
        after: Option<&Map<String, Value>>,
    ) -> f64 {
        let size = |item: Option<&Map<String, Value>>| item.map_or(0, item_size);
        let table_units = kib(size(before).max(size(after))).max(1) as f64;
        let factor = if written.transactional { 2.0 } else { 1.0 };
        if written.check_only {
            return table_units * factor;
        }
        let Some(table) = self.table(&written.table) else {
            return table_units * factor;
        };
        let index_units: u64 = table
            .indexes
            .iter()
            .map(|index| {
                let entry_before = before.and_then(|item| entry(&table, index, item));
                let entry_after = after.and_then(|item| entry(&table, index, item));
                let entry_units = |e: &Map<String, Value>| kib(item_size(e) + INDEX_ENTRY_OVERHEAD);
                match (&entry_before, &entry_after) {
                    (None, None) => 0,
                    (Some(e), None) | (None, Some(e)) => entry_units(e),
                    (Some(b), Some(a)) if b == a => 0,
                    (Some(b), Some(a)) if index.keys.iter().all(|k| b.get(k) == a.get(k)) => {
                        entry_units(b).max(entry_units(a))
                    }
                    (Some(b), Some(a)) => entry_units(b) + entry_units(a),
                }
            })
            .sum();
        table_units * factor + index_units as f64
    }

    /// The read units of a read call, from its request and answer.
    pub fn read_units(operation: &str, request: &Value, answer: &Value) -> f64 {
        let factor = |request: &Value| {
            if request["ConsistentRead"] == true {
                1.0
            } else {
                0.5
            }
        };
        let per_4k = |size: usize| size.div_ceil(4096).max(1) as f64;
        let size_of = |item: &Value| item.as_object().map_or(0, item_size);
        match operation {
            "GetItem" => per_4k(size_of(&answer["Item"])) * factor(request),
            "Query" | "Scan" => {
                let total: usize = answer["Items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(size_of)
                    .sum();
                per_4k(total) * factor(request)
            }
            "BatchGetItem" => request["RequestItems"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(table, asked)| {
                    let found: Vec<&Value> = answer["Responses"][table]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .collect();
                    let keys = asked["Keys"].as_array().map_or(0, Vec::len);
                    let missing = keys.saturating_sub(found.len()) as f64;
                    let units: f64 = found.iter().map(|item| per_4k(size_of(item))).sum();
                    (units + missing) * factor(asked)
                })
                .sum(),
            _ => 0.0,
        }
    }
}

/// The request that reads one item straight from the emulator, consistently.
pub fn get_item_request(written: &Written) -> Value {
    json!({"TableName": written.table, "Key": written.key, "ConsistentRead": true})
}

/// Bytes DynamoDB adds to each index entry.
const INDEX_ENTRY_OVERHEAD: usize = 100;

fn kib(bytes: usize) -> u64 {
    bytes.div_ceil(1024) as u64
}

/// An item's index entry, if it has the index's keys.
fn entry(table: &Table, index: &Index, item: &Map<String, Value>) -> Option<Map<String, Value>> {
    if !index.keys.iter().all(|k| item.contains_key(k)) {
        return None;
    }
    Some(
        item.iter()
            .filter(|(name, _)| match &index.projection {
                Projection::All => true,
                Projection::Include(kept) => {
                    table.keys.contains(name) || index.keys.contains(name) || kept.contains(name)
                }
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
    )
}

/// An item's size as DynamoDB counts it: each attribute's name and value.
pub fn item_size(item: &Map<String, Value>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let strings = || {
        inner
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(0, number_size),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "SS" => strings().map(str::len).sum(),
        "NS" => strings().map(number_size).sum(),
        "BS" => strings().map(|b| b.len() * 3 / 4).sum(),
        "L" => {
            3 + inner
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| 1 + value_size(v))
                .sum::<usize>()
        }
        "M" => {
            3 + inner
                .as_object()
                .into_iter()
                .flatten()
                .map(|(n, v)| 1 + n.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// A number's size: one byte per two significant digits, plus one.
fn number_size(number: &str) -> usize {
    let digits = number
        .chars()
        .filter(char::is_ascii_digit)
        .skip_while(|&c| c == '0')
        .count();
    digits.div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        let tables = Tables::default();
        tables.learn(&json!({
            "TableName": "t",
            "KeySchema": [{"AttributeName": "pk"}, {"AttributeName": "sk"}],
            "GlobalSecondaryIndexes": [
                {"KeySchema": [{"AttributeName": "g1"}], "Projection": {"ProjectionType": "ALL"}},
                {"KeySchema": [{"AttributeName": "g2"}],
                 "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["small"]}}
            ]
        }));
        tables
    }

    fn item(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn sizes_count_names_and_values() {
        assert_eq!(item_size(&item(json!({"pk": {"S": "abc"}}))), 5);
        assert_eq!(item_size(&item(json!({"n": {"N": "12345"}}))), 1 + 4);
        assert_eq!(
            item_size(&item(json!({"m": {"M": {"a": {"S": "xy"}}}}))),
            1 + 3 + 1 + 1 + 2
        );
    }

    #[test]
    fn a_put_pays_for_the_table_and_each_index_holding_it() {
        let tables = tables();
        let big = "x".repeat(1500);
        let put = json!({"TableName": "t", "Item": {
            "pk": {"S": "a"}, "sk": {"S": "b"}, "g1": {"S": "c"}, "g2": {"S": "d"},
            "small": {"S": "s"}, "big": {"S": big}
        }});
        let written = tables.written("PutItem", &put);
        assert_eq!(written.len(), 1);
        let after = item(put["Item"].clone());
        // Table 2 KiB, the full index 2 KiB, the narrow one 1 KiB.
        assert_eq!(tables.write_units(&written[0], None, Some(&after)), 5.0);
        // Without g2 the narrow index holds no entry.
        let mut sparse = after.clone();
        sparse.remove("g2");
        assert_eq!(tables.write_units(&written[0], None, Some(&sparse)), 4.0);
    }

    #[test]
    fn reads_round_up_per_4_kib_and_halve_when_eventually_consistent() {
        let answer = json!({"Items": [{"a": {"S": "x".repeat(5000)}}, {"a": {"S": "y"}}]});
        assert_eq!(Tables::read_units("Query", &json!({}), &answer), 1.0);
        let get = json!({"ConsistentRead": true});
        assert_eq!(Tables::read_units("GetItem", &get, &json!({})), 1.0);
        let batch = json!({"RequestItems": {"t": {"Keys": [{}, {}, {}]}}});
        let found = json!({"Responses": {"t": [{"a": {"S": "z"}}]}});
        assert_eq!(Tables::read_units("BatchGetItem", &batch, &found), 1.5);
    }
}

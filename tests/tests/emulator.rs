//! moto's server as `hookline dev` and the tests start it, with the adaptations of
//! `cli/emulator/sitecustomize.py`: a transaction that fails still leaves every
//! item as it was, though it no longer copies the table to roll back, and
//! DynamoDB's items are not kept a second time for moto's dashboard.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem, Update,
};
use hookline_cli::emulator::Emulator;

const TABLE: &str = "adaptations";

fn key(pk: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk".to_string(), AttributeValue::S(pk.into())),
        ("sk".to_string(), AttributeValue::S("item".into())),
    ]
    .into()
}

fn put(pk: &str, value: &str, only_if_absent: bool) -> TransactWriteItem {
    let mut item = key(pk);
    item.insert("value".into(), AttributeValue::S(value.into()));
    let mut put = Put::builder().table_name(TABLE).set_item(Some(item));
    if only_if_absent {
        put = put.condition_expression("attribute_not_exists(pk)");
    }
    TransactWriteItem::builder()
        .put(put.build().unwrap())
        .build()
}

fn set_value(pk: &str, value: &str) -> TransactWriteItem {
    let update = Update::builder()
        .table_name(TABLE)
        .set_key(Some(key(pk)))
        .update_expression("SET #value = :value")
        .expression_attribute_names("#value", "value")
        .expression_attribute_values(":value", AttributeValue::S(value.into()))
        .build()
        .unwrap();
    TransactWriteItem::builder().update(update).build()
}

async fn value(client: &Client, pk: &str) -> Option<String> {
    let read = client
        .get_item()
        .table_name(TABLE)
        .set_key(Some(key(pk)))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    read.item
        .and_then(|item| item.get("value").and_then(|v| v.as_s().ok()).cloned())
}

async fn create_table(client: &Client) {
    let element = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(TABLE)
        .key_schema(element("pk", KeyType::Hash))
        .key_schema(element("sk", KeyType::Range))
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_transaction_leaves_every_item_as_it_was_and_items_are_kept_once() {
    let emulator = Emulator::start().expect("the emulator starts");
    let client = Client::new(&shared::aws::for_emulator(emulator.url()).await);
    create_table(&client).await;
    for pk in ["kept", "claimed"] {
        client
            .put_item()
            .table_name(TABLE)
            .set_item(Some(key(pk)))
            .item("value", AttributeValue::S("before".into()))
            .send()
            .await
            .unwrap();
    }

    // A new item, a change to an existing one, then a claim that is taken: the
    // first two are written before the third's condition fails, and taken back.
    let refused = client
        .transact_write_items()
        .transact_items(put("new", "written", true))
        .transact_items(set_value("kept", "changed"))
        .transact_items(put("claimed", "again", true))
        .send()
        .await;
    assert!(refused.is_err(), "the taken claim cancels the transaction");
    assert_eq!(value(&client, "new").await, None);
    assert_eq!(value(&client, "kept").await.as_deref(), Some("before"));
    assert_eq!(value(&client, "claimed").await.as_deref(), Some("before"));

    client
        .transact_write_items()
        .transact_items(put("new", "written", true))
        .transact_items(set_value("kept", "changed"))
        .send()
        .await
        .expect("a transaction whose conditions hold is written");
    assert_eq!(value(&client, "new").await.as_deref(), Some("written"));
    assert_eq!(value(&client, "kept").await.as_deref(), Some("changed"));

    let dashboard: serde_json::Value =
        reqwest::get(format!("{}/moto-api/data.json", emulator.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        dashboard["dynamodb"]["Item"],
        serde_json::json!([]),
        "DynamoDB's items are held by their tables alone"
    );
}

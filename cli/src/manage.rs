//! `hookline keys …` and `hookline endpoints …`: the API's operations on the
//! configured table (an AWS account, or the emulator through `AWS_ENDPOINT_URL`).

use api::views::{EndpointOut, EndpointWithSecret};
use clap::Subcommand;
use serde_json::{Map, json};
use shared::account::Account;
use shared::config::{self, Config, ConfigError};
use shared::endpoint;
use shared::ids::{ApiKeyId, EndpointId};
use shared::keys::ApiKey;
use shared::store::{Creation, MAX_ENDPOINTS_PER_ACCOUNT, Store};
use time::OffsetDateTime;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a platform key, store its SHA-256 in HOOKLINE_TABLE and print the key
    /// once (its id goes to stderr).
    Create,
    /// Print every platform key as JSON lines, oldest first: its id, its first
    /// characters and when it was made (never the key).
    List,
    /// End a platform key: requests with it answer 401 within 30 seconds (each
    /// instance keeps a key it has checked for that long).
    Revoke {
        /// The key's id, `key_…`, as `keys list` shows it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Print an account's endpoints as JSON lines, oldest first (no secrets).
    List {
        #[arg(long)]
        account: Account,
    },
    /// Create an endpoint and print it as JSON, with its secret.
    Create {
        #[arg(long)]
        account: Account,
        #[arg(long)]
        url: String,
        #[arg(long)]
        description: Option<String>,
        /// An event type to subscribe to; repeat for more. None: every type.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// A dataset (`owner/name`) to subscribe to; repeat for more. None: every dataset.
        #[arg(long = "dataset")]
        datasets: Vec<String>,
        /// `standard` or `slack`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Delete an endpoint.
    Delete {
        #[arg(long)]
        account: Account,
        id: String,
    },
}

/// The table named by `HOOKLINE_TABLE`; the queues are not needed here.
async fn store_from_env() -> Result<(Store, Config), String> {
    let config = Config::from_lookup(|name| match name {
        config::DELIVERY_QUEUE_URL | config::DLQ_URL => {
            Some(std::env::var(name).unwrap_or_else(|_| "unused".into()))
        }
        other => std::env::var(other).ok(),
    })
    .map_err(|e: ConfigError| e.to_string())?;
    let sdk = shared::aws::from_env().await;
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.table.clone(),
        config.retention(),
    );
    Ok((store, config))
}

pub async fn keys(command: KeysCommand) -> Result<(), String> {
    let (store, _) = store_from_env().await?;
    match command {
        KeysCommand::Create => {
            let key = shared::keys::generate();
            let stored = ApiKey::new(&key, OffsetDateTime::now_utc());
            store
                .put_api_key(&stored)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("created platform key {}", stored.id);
            println!("{key}");
        }
        KeysCommand::List => {
            for key in store.list_api_keys().await.map_err(|e| e.to_string())? {
                let listed = json!({
                    "id": key.id,
                    "prefix": key.prefix,
                    "created_at": shared::timefmt::format(key.created_at),
                });
                println!("{listed}");
            }
        }
        KeysCommand::Revoke { id } => {
            let missing = || format!("no platform key {id}");
            let key_id = ApiKeyId::parse(&id).ok_or_else(missing)?;
            if !store
                .revoke_api_key(&key_id)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(missing());
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn endpoints(command: EndpointsCommand) -> Result<(), String> {
    let (store, config) = store_from_env().await?;
    match command {
        EndpointsCommand::List { account } => {
            let mut cursor = None;
            loop {
                let page = store
                    .list_endpoints(&account, 250, cursor.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                for endpoint in &page.items {
                    let printed = serde_json::to_string(&EndpointOut::from(endpoint));
                    println!("{}", printed.expect("serialises"));
                }
                match page.next_cursor.as_deref().and_then(EndpointId::parse) {
                    Some(next) => cursor = Some(next),
                    None => return Ok(()),
                }
            }
        }
        EndpointsCommand::Create {
            account,
            url,
            description,
            event_types,
            datasets,
            format,
        } => {
            // The API's body, so the API's rules apply word for word.
            let mut body = Map::new();
            body.insert("url".into(), json!(url));
            if let Some(description) = description {
                body.insert("description".into(), json!(description));
            }
            if !event_types.is_empty() {
                body.insert("event_types".into(), json!(event_types));
            }
            if !datasets.is_empty() {
                body.insert("datasets".into(), json!(datasets));
            }
            if let Some(format) = format {
                body.insert("format".into(), json!(format));
            }
            let catalog = store.event_type_names().await.map_err(|e| e.to_string())?;
            let input =
                endpoint::parse_new(&body, &account, config.allow_private_targets, &catalog)
                    .map_err(|e| e.to_string())?;
            endpoint::refuse_private_host(&input.url, config.allow_private_targets)
                .await
                .map_err(|e| e.to_string())?;
            let (endpoint, secrets) =
                endpoint::new_endpoint(&account, input, OffsetDateTime::now_utc());
            let creation = store
                .create_endpoint(&endpoint, &secrets)
                .await
                .map_err(|e| e.to_string())?;
            if creation == Creation::AccountFull {
                return Err(format!(
                    "account {account} has {MAX_ENDPOINTS_PER_ACCOUNT} endpoints, the most it may have"
                ));
            }
            let printed = serde_json::to_string(&EndpointWithSecret {
                endpoint: EndpointOut::from(&endpoint),
                secret: Some(secrets.current.expose()),
            });
            println!("{}", printed.expect("serialises"));
            Ok(())
        }
        EndpointsCommand::Delete { account, id } => {
            let missing = || format!("no endpoint {id} in account {account}");
            let endpoint_id = EndpointId::parse(&id).ok_or_else(missing)?;
            if store
                .delete_endpoint(&account, &endpoint_id)
                .await
                .map_err(|e| e.to_string())?
            {
                println!("deleted {id}");
                Ok(())
            } else {
                Err(missing())
            }
        }
    }
}

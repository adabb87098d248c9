//! The delivery client ignores proxy variables: a proxy would resolve the
//! endpoint's name itself, around the address check. A test binary of its own,
//! since the environment is the whole process's.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dispatcher::dns::CheckedResolver;
use hookline_tests::Receiver;
use shared::config::{self, Config};

const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

#[test]
fn proxy_variables_do_not_route_deliveries_around_the_address_check() {
    // A "proxy" that counts the connections it is offered and answers none.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());

    let config = Config::from_lookup(|name| match name {
        config::TABLE => Some("unused".into()),
        config::DELIVERY_QUEUE_URL | config::DLQ_URL => Some("http://unused".into()),
        config::ALLOW_PRIVATE_TARGETS => Some("1".into()),
        _ => None,
    })
    .unwrap();
    let looked_up = Arc::new(Mutex::new(Vec::new()));
    let asked = looked_up.clone();
    let resolver = CheckedResolver::with_lookup(
        Arc::new(move |host: String| {
            asked.lock().unwrap().push(host);
            Box::pin(async { Ok(vec![IpAddr::from([127, 0, 0, 1])]) })
        }),
        true,
    );
    // reqwest reads the proxy variables when a client is built. They are set and
    // removed before any other thread of this binary could read the environment.
    for variable in PROXY_VARIABLES {
        // SAFETY: this binary's only test, and no other thread runs yet.
        unsafe { std::env::set_var(variable, &proxy_url) };
    }
    for variable in ["NO_PROXY", "no_proxy"] {
        // SAFETY: as above.
        unsafe { std::env::remove_var(variable) };
    }
    let client = dispatcher::http_client_with(&config, resolver);
    for variable in PROXY_VARIABLES {
        // SAFETY: as above.
        unsafe { std::env::remove_var(variable) };
    }

    let offered = Arc::new(AtomicUsize::new(0));
    let counter = offered.clone();
    std::thread::spawn(move || {
        for connection in proxy.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(connection);
        }
    });

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let receiver = Receiver::start().await;
        let port = receiver.url("").rsplit(':').next().unwrap().to_string();
        let response = client
            .post(format!("http://hooks.example.com:{port}/hook"))
            .body("{}")
            .send()
            .await
            .expect("the receiver answers");
        assert_eq!(response.status(), 204);
        let deliveries = receiver.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(deliveries[0].path, "/hook");
    });
    assert_eq!(*looked_up.lock().unwrap(), ["hooks.example.com"]);
    assert_eq!(offered.load(Ordering::SeqCst), 0, "the proxy was used");
}

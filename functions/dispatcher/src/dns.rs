//! The SSRF guard at delivery time: every name is resolved once, the whole answer
//! is refused if any address is not public, and the connection goes only to the
//! addresses checked. A DNS answer that turns into 127.0.0.1 after the endpoint
//! was saved is refused here, and no second lookup can swap it in later.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use shared::net::{AddressError, check_answer};

/// Resolves a host name to its addresses.
pub type Lookup = Arc<dyn Fn(String) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> + Send + Sync>;

/// The HTTP client's resolver: looks a name up, checks the answer, hands reqwest
/// only the checked addresses.
#[derive(Clone)]
pub struct CheckedResolver {
    lookup: Lookup,
    allow_private_targets: bool,
}

impl CheckedResolver {
    /// Over the system resolver.
    pub fn system(allow_private_targets: bool) -> Self {
        Self::with_lookup(
            Arc::new(|host: String| {
                Box::pin(async move {
                    Ok(tokio::net::lookup_host((host.as_str(), 0))
                        .await?
                        .map(|address| address.ip())
                        .collect())
                })
            }),
            allow_private_targets,
        )
    }

    /// Over any lookup, e.g. one that answers what a test needs.
    pub fn with_lookup(lookup: Lookup, allow_private_targets: bool) -> Self {
        Self {
            lookup,
            allow_private_targets,
        }
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let lookup = self.lookup.clone();
        let allow = self.allow_private_targets;
        Box::pin(async move {
            let answer = lookup(host.clone())
                .await
                .map_err(|e| AddressError::Dns(format!("{host}: {e}")))?;
            if answer.is_empty() {
                return Err(AddressError::Dns(format!("{host}: no addresses")).into());
            }
            check_answer(&answer, allow)?;
            // Port 0 is replaced by the URL's port.
            let pinned: Addrs = Box::new(answer.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(pinned)
        })
    }
}

/// The check for a URL whose host is an address literal, which reqwest connects
/// to without asking the resolver.
pub fn check_literal(url: &str, allow_private_targets: bool) -> Result<(), AddressError> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(()); // reqwest reports the malformed URL itself
    };
    let host = parsed.host_str().unwrap_or_default();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) => check_answer(&[ip], allow_private_targets),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals_are_checked_before_any_connection() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "https://[::1]/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::ffff:10.0.0.1]/",
        ] {
            assert!(
                matches!(check_literal(url, false), Err(AddressError::Blocked(_))),
                "{url}"
            );
            assert_eq!(check_literal(url, true), Ok(()), "{url}");
        }
        assert_eq!(check_literal("https://8.8.8.8/hook", false), Ok(()));
        // Names are the resolver's to check.
        assert_eq!(check_literal("https://localhost/hook", false), Ok(()));
    }
}

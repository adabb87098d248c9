//! Which credential may use which route: the one place that decides it.
//!
//! A platform key may use every route. A portal token belongs to one account's
//! people: it reaches that account's routes (but not its portal sessions) and the
//! event-type catalog; another account's routes are as absent to it as a route
//! that does not exist (404); the platform's own routes are refused (403).

use crate::account::Account;

/// Who is calling, as authentication found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The platform's servers and operators.
    Platform,
    /// A portal token of `account`, live when it was checked.
    Portal { account: Account },
}

/// What a route is, as far as access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// A route under `/v1/accounts/{account}/` that the account's people manage.
    Account(&'a Account),
    /// `/v1/accounts/{account}/portal-sessions`: only the platform makes or ends them.
    PortalSessions(&'a Account),
    /// `GET /v1/event-types`.
    Catalog,
    /// Ingest, event-type changes and the dead-letter queue.
    Platform,
}

/// What a credential may do on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Answered as if the route did not exist: another account's.
    NotFound,
    /// A route for platform keys only.
    Forbidden,
}

pub fn decide(credential: &Credential, scope: Scope<'_>) -> Decision {
    let own = match credential {
        Credential::Platform => return Decision::Allow,
        Credential::Portal { account } => account,
    };
    match scope {
        Scope::Catalog => Decision::Allow,
        Scope::Platform => Decision::Forbidden,
        // Another account's routes, portal sessions included, are not there at all.
        Scope::Account(account) | Scope::PortalSessions(account) if account != own => {
            Decision::NotFound
        }
        Scope::Account(_) => Decision::Allow,
        Scope::PortalSessions(_) => Decision::Forbidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::{Allow, Forbidden, NotFound};

    #[test]
    fn every_credential_on_every_kind_of_route() {
        let account = |name| Account::parse(name).unwrap();
        let (jane, bob, jane_doe) = (account("jane"), account("bob"), account("jane.doe"));
        let portal = Credential::Portal {
            account: jane.clone(),
        };
        let scopes = [
            Scope::Account(&jane),
            Scope::Account(&bob),
            Scope::Account(&jane_doe),
            Scope::PortalSessions(&jane),
            Scope::PortalSessions(&bob),
            Scope::Catalog,
            Scope::Platform,
        ];
        let expected = [
            // platform key, jane's portal token
            (Allow, Allow),
            (Allow, NotFound),
            (Allow, NotFound),
            (Allow, Forbidden),
            (Allow, NotFound),
            (Allow, Allow),
            (Allow, Forbidden),
        ];
        for (scope, (platform, expected_portal)) in scopes.into_iter().zip(expected) {
            assert_eq!(decide(&Credential::Platform, scope), platform, "{scope:?}");
            assert_eq!(decide(&portal, scope), expected_portal, "{scope:?}");
        }
    }
}

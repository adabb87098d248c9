//! The portal page, `GET /portal`, and its two assets: files compiled into the binary,
//! served under a Content-Security-Policy that lets the page load nothing but them
//! and talk to nothing but this API.

use std::sync::OnceLock;

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use shared::http::ApiError;

pub const PAGE_PATH: &str = "/portal";

const PAGE: &str = include_str!("../portal/index.html");
/// Where the page names its assets' version, so a new deployment is never mixed with cached files.
const VERSION_MARK: &str = "{{version}}";

/// The assets, by path: content type and body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/portal/portal.css",
        "text/css; charset=utf-8",
        include_str!("../portal/portal.css"),
    ),
    (
        "/portal/portal.js",
        "text/javascript; charset=utf-8",
        include_str!("../portal/portal.js"),
    ),
];

/// The page changes with every deployment that changes it, so it is revalidated each time.
const PAGE_CACHE: &str = "no-cache";
/// An asset asked for with the current version cannot change under that URL.
const VERSIONED_ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// The answer to a request for the page or one of its assets; `None` for other paths.
pub fn serve(req: &Request, frame_ancestors: &str) -> Option<Response<Body>> {
    let path = req.uri().path();
    if path != PAGE_PATH && !path.starts_with("/portal/") {
        return None;
    }
    let response = if req.method() != Method::GET {
        ApiError::method_not_allowed("GET").into_response()
    } else if path == PAGE_PATH {
        file(page(), "text/html; charset=utf-8", PAGE_CACHE)
    } else if let Some((_, content_type, body)) = ASSETS.iter().find(|(p, ..)| *p == path) {
        let versioned =
            req.query_string_parameters_ref().and_then(|q| q.first("v")) == Some(version());
        let cache = if versioned {
            VERSIONED_ASSET_CACHE
        } else {
            PAGE_CACHE
        };
        file(body, content_type, cache)
    } else {
        ApiError::not_found(format!("no route {path}")).into_response()
    };
    Some(secured(response, frame_ancestors))
}

/// The first characters of the SHA-256 of the assets.
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let assets: String = ASSETS.iter().map(|(_, _, body)| *body).collect();
        shared::keys::hash(&assets)[..16].to_string()
    })
}

fn page() -> &'static str {
    static PAGE_WITH_VERSION: OnceLock<String> = OnceLock::new();
    PAGE_WITH_VERSION.get_or_init(|| PAGE.replace(VERSION_MARK, version()))
}

fn file(body: &'static str, content_type: &'static str, cache: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, cache)
        .body(Body::Text(body.to_string()))
        .expect("static headers make a valid response")
}

/// The policy of every portal answer: nothing inline, nothing from elsewhere.
pub fn content_security_policy(frame_ancestors: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {frame_ancestors}"
    )
}

fn secured(mut response: Response<Body>, frame_ancestors: &str) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&content_security_policy(frame_ancestors))
            .expect("the configuration admits only visible ASCII sources"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn get(path_and_query: &str) -> Option<Response<Body>> {
        request(Method::GET, path_and_query)
    }

    fn request(method: Method, path_and_query: &str) -> Option<Response<Body>> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let query: HashMap<String, String> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let request = lambda_http::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::Empty)
            .unwrap()
            .with_query_string_parameters(query);
        serve(&request, "'self' https://app.example.com")
    }

    fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .unwrap()
    }

    fn text(response: &Response<Body>) -> &str {
        std::str::from_utf8(response.body().as_ref()).unwrap()
    }

    fn assert_secured(response: &Response<Body>) {
        let policy = header(response, "content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self'",
            "frame-ancestors 'self' https://app.example.com",
        ] {
            assert!(
                policy.split("; ").any(|d| d == directive),
                "{directive} in {policy}"
            );
        }
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(header(response, "x-content-type-options"), "nosniff");
        assert_eq!(header(response, "referrer-policy"), "no-referrer");
    }

    #[test]
    fn other_paths_are_not_the_portals() {
        for path in ["/", "/v1/accounts/jane/endpoints", "/portals", "/portalx/a"] {
            assert!(get(path).is_none(), "{path}");
        }
    }

    #[test]
    fn the_page_names_its_assets_by_version_and_has_nothing_inline() {
        let page = get("/portal").unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&page, "cache-control"), "no-cache");
        assert_secured(&page);
        let html = text(&page);
        for (path, ..) in ASSETS {
            let reference = format!("{}?v={}", path.trim_start_matches('/'), version());
            assert!(html.contains(&reference), "{reference}");
        }
        assert!(!html.contains(VERSION_MARK));
        // Inline code or style would be refused by the policy above.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script type=\"module\" src="));
        for inline in ["<style", " style=", " onclick=", " onload=", "javascript:"] {
            assert!(!html.contains(inline), "{inline}");
        }
        // Nothing from elsewhere: every reference is to the page's own assets.
        for attribute in [" src=\"", " href=\""] {
            for reference in html.split(attribute).skip(1) {
                assert!(reference.starts_with("portal/portal."), "{reference}");
            }
        }
    }

    #[test]
    fn assets_have_their_types_and_are_cached_for_good_only_under_the_current_version() {
        for (path, content_type, body) in ASSETS {
            let versioned = get(&format!("{path}?v={}", version())).unwrap();
            assert_eq!(versioned.status(), StatusCode::OK);
            assert_eq!(header(&versioned, "content-type"), *content_type);
            assert_eq!(
                header(&versioned, "cache-control"),
                "public, max-age=31536000, immutable"
            );
            assert_eq!(text(&versioned), *body);
            assert_secured(&versioned);
            for stale in [path.to_string(), format!("{path}?v=0123456789abcdef")] {
                assert_eq!(header(&get(&stale).unwrap(), "cache-control"), "no-cache");
            }
        }
    }

    #[test]
    fn the_assets_use_no_outside_resource() {
        for (path, _, body) in ASSETS {
            for outside in [
                "http://",
                "https://",
                "@import",
                "url(",
                "eval(",
                "innerHTML",
            ] {
                assert!(!body.contains(outside), "{path} has {outside}");
            }
        }
    }

    #[test]
    fn unknown_assets_and_other_methods_answer_the_contracts_errors_under_the_policy() {
        let missing = get("/portal/secrets.txt").unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_secured(&missing);
        let posted = request(Method::POST, "/portal").unwrap();
        assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&posted, "allow"), "GET");
        assert_secured(&posted);
    }
}

//! Credentials out of anything shown to people: URLs as they may be logged,
//! and free text (error messages of libraries, configuration errors) with
//! the user information and query of every URL in it masked.
//!
//! Secrets travel in a URL's user information (`mqtt://user:secret@host`,
//! RFC 3986 §3.2.1) and often in its query (`?token=…`). Neither is ever
//! needed to tell which endpoint failed, so both go; scheme, host, port and
//! path stay.

/// A URL as it may be logged: scheme, host, port and path, without user
/// name, password, query or fragment (tokens often travel in the query).
/// Text that is not a URL loses its query and fragment only.
pub fn url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return url.split(['?', '#']).next().unwrap_or("").to_string(),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// Where a URL written inside text ends: white space, quotes and brackets
/// that usually surround it.
fn url_end(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | ',' | ';')
}

/// `text` with every URL in it (`scheme://…`) shown as [`url`] shows it,
/// its removed user information marked `***@` and its removed query `?***`,
/// so a reader still sees that credentials were there. Everything else is
/// kept as it is.
pub fn text(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let after = &rest[i + 3..];
        let end = after.find(url_end).unwrap_or(after.len());
        let (body, tail) = after.split_at(end);
        out.push_str(&rest[..i + 3]);
        let (main, query) = match body.find(['?', '#']) {
            Some(q) => (&body[..q], if body[q..].starts_with('?') { "?***" } else { "" }),
            None => (body, ""),
        };
        let (authority, path) = main.find('/').map_or((main, ""), |p| main.split_at(p));
        match authority.rsplit_once('@') {
            Some((_, host)) => {
                out.push_str("***@");
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        out.push_str(path);
        out.push_str(query);
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_urls_carry_no_secret() {
        assert_eq!(url("https://user:pw@api.example.com:8443/v1/ingest?token=abc#x"), "https://api.example.com:8443/v1/ingest");
        assert_eq!(url("postgres://relais:secret@db:5432/plant"), "postgres://db:5432/plant");
        assert_eq!(url("nats://a:4222"), "nats://a:4222");
        assert_eq!(url("not a url?token=1"), "not a url");
    }

    #[test]
    fn urls_in_text_lose_user_information_and_query() {
        assert_eq!(
            text("broker url \"mqtt://user:secret@10.0.0.1:1883\" carries credentials"),
            "broker url \"mqtt://***@10.0.0.1:1883\" carries credentials"
        );
        assert_eq!(
            text("error sending request for url (https://u:p@h:1/a/b?token=abc): refused; then http://h2/x"),
            "error sending request for url (https://***@h:1/a/b?***): refused; then http://h2/x"
        );
        assert_eq!(text("a:b@c and no scheme"), "a:b@c and no scheme");
        assert_eq!(text("mqtts://p@ss:w@rd@host"), "mqtts://***@host");
        assert_eq!(text("trailing ://"), "trailing ://");
        assert_eq!(text("é://ü:ö@ä/ü"), "é://***@ä/ü");
    }
}

//! A minimal HTTP/1.1 client (one request per connection): the fake Telegram server's
//! statistics and the admin panel under load.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::{Res, err};

/// One request; returns the status, the `Set-Cookie` values (`name=value` parts) and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Res<(u16, Vec<String>, String)> {
    let mut stream = TcpStream::connect(addr).map_err(err)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(err)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if !body.is_empty() {
        let _ = write!(request, "Content-Length: {}\r\n", body.len());
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).map_err(err)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(err)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status from {addr}{path}"))?;
    let cookies = head
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie").then(|| {
                value
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .collect();
    Ok((status, cookies, body.to_owned()))
}

pub(crate) fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Res<(u16, String)> {
    http(addr, "GET", path, headers, "").map(|(status, _, body)| (status, body))
}

/// Logs in to the admin panel; returns the `Cookie` header of the session.
pub(crate) fn admin_login(addr: &str, user: &str, password: &str) -> Res<String> {
    let (_, cookies, page) = http(addr, "GET", "/login", &[], "")?;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("no CSRF token on the login page")?
        .to_owned();
    let form = format!("username={user}&password={password}&csrf={csrf}");
    let cookie = cookies.join("; ");
    let (status, session, _) = http(
        addr,
        "POST",
        "/login",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )?;
    if session.is_empty() || status >= 400 {
        return Err(format!("login failed: HTTP {status}"));
    }
    Ok(session.join("; "))
}

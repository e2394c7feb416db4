//! `sysmgr nginx`: the reverse proxy in front of an app, as the PM2 articles set it up
//! (a keep-alive upstream, the forwarding headers), one upstream server per host. Pure text.

use std::fmt::Write as _;

/// What the nginx text is made from.
#[derive(Debug, Clone)]
pub struct Front<'a> {
    /// The app's name: the upstream's name.
    pub app: &'a str,
    /// `host:port` of each upstream server.
    pub servers: Vec<String>,
    /// The port nginx listens on.
    pub listen: u16,
    /// `server_name`.
    pub server_name: &'a str,
    /// Where the servers come from, for the header comment.
    pub origin: String,
}

/// The upstream name: the app's, with the characters nginx names do not take replaced.
fn upstream_name(app: &str) -> String {
    app.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `map`, `upstream` and `server` blocks, for the `http` context (a file in
/// `/etc/nginx/conf.d/` or `sites-enabled/`).
pub fn render(front: &Front<'_>) -> String {
    let up = format!("sysmgr_{}", upstream_name(front.app));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# nginx in front of `{}`, written by `sysmgr nginx` ({}).\n\
         # Put it in the http context: /etc/nginx/conf.d/{}.conf, then `nginx -t && nginx -s reload`.\n",
        front.app, front.origin, front.app
    );
    let _ = writeln!(
        s,
        "# WebSocket upgrades pass through; other requests keep the upstream connection alive\n\
         # (a fixed `Connection: upgrade` would close it after every request).\n\
         map $http_upgrade ${up}_connection {{\n    default upgrade;\n    '' '';\n}}\n"
    );
    let _ = writeln!(s, "upstream {up} {{");
    for server in &front.servers {
        // A host whose instances are all being replaced answers 502 for a moment at most;
        // nginx then tries the next one (proxy_next_upstream below).
        let _ = writeln!(s, "    server {server} max_fails=1 fail_timeout=2s;");
    }
    let _ = writeln!(s, "    keepalive 64;\n}}\n");
    let _ = writeln!(
        s,
        "server {{\n    listen {};\n    server_name {};\n\n    location / {{\n        proxy_pass http://{up};\n        proxy_http_version 1.1;\n        proxy_set_header Upgrade $http_upgrade;\n        proxy_set_header Connection ${up}_connection;\n        proxy_set_header Host $http_host;\n        proxy_set_header X-Real-IP $remote_addr;\n        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        proxy_set_header X-Forwarded-Proto $scheme;\n        proxy_set_header X-NginX-Proxy true;\n        proxy_max_temp_file_size 0;\n        proxy_redirect off;\n        proxy_read_timeout 240s;\n        proxy_next_upstream error timeout http_502 http_503;\n    }}\n}}",
        front.listen, front.server_name
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_per_host_and_the_seeds_headers() {
        let text = render(&Front {
            app: "web-api",
            servers: vec!["10.0.0.1:3000".into(), "10.0.0.2:3000".into()],
            listen: 80,
            server_name: "_",
            origin: "hosts of `production`".into(),
        });
        assert!(text.contains("upstream sysmgr_web_api {\n    server 10.0.0.1:3000 max_fails=1 fail_timeout=2s;\n    server 10.0.0.2:3000 max_fails=1 fail_timeout=2s;\n    keepalive 64;\n}"), "{text}");
        for header in [
            "X-Forwarded-For $proxy_add_x_forwarded_for",
            "Host $http_host",
            "X-NginX-Proxy true",
            "Upgrade $http_upgrade",
        ] {
            assert!(
                text.contains(&format!("proxy_set_header {header};")),
                "{header}"
            );
        }
        assert!(text.contains("proxy_pass http://sysmgr_web_api;"));
    }
}

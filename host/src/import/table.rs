//! The directives whose fate does not depend on where they are or on their
//! values: what gale does instead, or the nearest gale feature. Directives
//! that are translated are handled in `translate.rs` and `location.rs`; a
//! directive found in neither is reported as not supported.

use super::report::Fate;

/// The fate of a directive gale never needs to translate, or `None` when
/// the translation handles it.
pub fn fixed(name: &str) -> Option<Fate> {
    let d = |s: &str| Some(Fate::Default(s.to_owned()));
    let u = |s: &str| Some(Fate::Unsupported(s.to_owned()));
    match name {
        // Main context.
        "user" => u(
            "gale does not switch users: run it as the user it should be (systemd's `User=`, deploy/systemd/gale.service)",
        ),
        "worker_rlimit_nofile" => u("raise the limit where gale is started (systemd's `LimitNOFILE=`)"),
        "daemon" | "master_process" => {
            d("gale runs in the foreground under systemd (Type=notify) and has no master process")
        }
        "worker_shutdown_timeout" => u("[global] shutdown_timeout"),
        "load_module" => u("gale's extensions are WebAssembly plugins ([global] plugin_dir)"),
        "env" | "timer_resolution" | "worker_priority" | "worker_cpu_affinity" | "pcre_jit" | "thread_pool" => {
            d("no such setting in gale")
        }
        "stream" | "mail" => u("gale proxies HTTP only"),
        // events { }
        "use" => d("gale uses epoll on Linux"),
        "multi_accept" | "accept_mutex" | "accept_mutex_delay" => d("gale's listeners accept in one process"),
        // Socket and file tuning.
        "sendfile" | "tcp_nopush" | "aio" | "directio" | "output_buffers" | "sendfile_max_chunk" => {
            d("gale streams files in 512 KiB chunks from the page cache (static-and-gzip.md)")
        }
        "tcp_nodelay" => d("gale's connections write without Nagle's delay"),
        "reset_timedout_connection" | "lingering_close" | "lingering_time" | "lingering_timeout" => {
            d("gale closes timed-out connections itself")
        }
        "server_names_hash_bucket_size"
        | "server_names_hash_max_size"
        | "types_hash_max_size"
        | "types_hash_bucket_size"
        | "variables_hash_max_size"
        | "map_hash_bucket_size"
        | "proxy_headers_hash_max_size"
        | "proxy_headers_hash_bucket_size"
        | "client_header_buffer_size"
        | "client_body_buffer_size"
        | "gzip_buffers" => d("gale sizes its tables and buffers itself"),
        "server_tokens" => d("gale adds no version banner; the backend's `Server` header passes unchanged"),
        "log_format" => {
            u("gale writes nginx's `combined` format, or JSON lines ([global] access_log_format = \"json\")")
        }
        "open_log_file_cache" => d("gale keeps its log files open"),
        "open_file_cache" | "open_file_cache_valid" | "open_file_cache_min_uses" | "open_file_cache_errors" => {
            d("static locations have an open file cache, on by default (static.open_file_cache)")
        }
        "types" => d("gale has mainline nginx's mime.types table built in"),
        "charset" | "source_charset" | "charset_types" => {
            u("gale adds no charset; a header-policy plugin can set `Content-Type`")
        }
        "resolver" | "resolver_timeout" => u("upstream servers are IP addresses in gale"),
        "error_page" => u("gale answers its own errors; the backend's error pages pass unchanged"),
        "rewrite" | "rewrite_log" | "set" | "map" | "geo" | "split_clients" => {
            u("a header-policy plugin (plugins.md) or a plugin of your own")
        }
        "try_files" => u("a `static` location serves files; a `proxy` location forwards: pick one per location"),
        "allow" | "deny" | "auth_basic" | "auth_basic_user_file" | "auth_request" | "satisfy" => {
            u("a header-policy plugin's `deny` rules, or a plugin of your own")
        }
        "limit_req" | "limit_req_zone" | "limit_conn" | "limit_conn_zone" | "limit_rate" | "limit_rate_after" => {
            u("[global] max_connections; per-client limits need a plugin of your own")
        }
        "autoindex" => u("gale answers 403 for a directory without an index, as nginx with `autoindex off`"),
        "disable_symlinks" => u("static.follow_symlinks (\"inside_root\" by default)"),
        "etag" | "if_modified_since" => {
            d("gale sends an ETag and answers If-Modified-Since exactly, as nginx by default")
        }
        "ssl_protocols" | "ssl_ciphers" | "ssl_prefer_server_ciphers" | "ssl_ecdh_curve" | "ssl_dhparam" => {
            d("gale offers TLS 1.2 and 1.3 with AEAD cipher suites and forward secrecy only")
        }
        "ssl_session_cache" | "ssl_session_timeout" | "ssl_session_tickets" | "ssl_buffer_size" => {
            d("rustls manages TLS sessions")
        }
        "ssl_stapling"
        | "ssl_stapling_verify"
        | "ssl_trusted_certificate"
        | "ssl_client_certificate"
        | "ssl_verify_client" => u("gale's TLS is a certificate and key per server (tls = { cert, key })"),
        "http2" => d("gale offers HTTP/2 by ALPN on TLS listeners ([http] http2 = true)"),
        "proxy_http_version" => d("gale speaks HTTP/1.1 with keep-alive to backends"),
        "proxy_buffering"
        | "proxy_buffers"
        | "proxy_buffer_size"
        | "proxy_busy_buffers_size"
        | "proxy_request_buffering"
        | "proxy_max_temp_file_size"
        | "proxy_temp_path"
        | "proxy_temp_file_write_size" => d("gale streams request and response bodies without temporary files"),
        "proxy_send_timeout" => u("upstream read_timeout (the wait for the response) and [http] client_body_timeout"),
        "proxy_intercept_errors" => u("the backend's error answers pass unchanged"),
        "proxy_cache"
        | "proxy_cache_path"
        | "proxy_cache_valid"
        | "proxy_cache_key"
        | "proxy_cache_bypass"
        | "proxy_no_cache"
        | "proxy_cache_use_stale"
        | "proxy_cache_lock" => u("gale does not cache responses"),
        "proxy_hide_header" | "proxy_ignore_headers" => u("a header-policy plugin's `response.remove`"),
        "proxy_next_upstream_tries" | "proxy_next_upstream_timeout" => {
            d("gale tries each backend at most once per request")
        }
        "proxy_ssl_verify" | "proxy_ssl_server_name" | "proxy_ssl_certificate" => {
            u("gale speaks plain HTTP to backends")
        }
        "gzip_vary" => d("gale always sends `Vary: Accept-Encoding` on responses it could compress"),
        "gzip_disable" => u("gale compresses for every client that accepts gzip"),
        "gzip_static" => u("gale compresses static files on the fly ([http] gzip)"),
        "keepalive_requests" | "keepalive_time" | "keepalive_disable" | "send_timeout" => d("no such limit in gale"),
        "underscores_in_headers" | "ignore_invalid_headers" => {
            d("gale refuses malformed headers (config.md, \"Strict framing\")")
        }
        "absolute_redirect" | "port_in_redirect" | "server_name_in_redirect" => {
            d("gale's directory redirects are relative (nginx's absolute_redirect off)")
        }
        "log_not_found" | "log_subrequest" => d("gale logs each request once, in the access log"),
        // nginx-upload-module: what gale's upload location does itself.
        "upload_pass_args" => d("gale forwards the request's query string to the backend"),
        "upload_buffer_size" | "upload_max_part_header_len" => {
            d("gale's parser streams; part headers are capped (upload.max_part_header_bytes, 8192)")
        }
        "upload_max_file_size" => u("[http] client_max_body_size caps the whole upload (uploads.md)"),
        "upload_limit_rate" => u("no rate limit in gale"),
        "upload_resumable" | "upload_state_store" => u("gale takes each upload in one request"),
        "upload_tame_arrays" | "upload_empty_fiels_names" | "upload_empty_field_names" => {
            u("gale names a file's fields `<field>.name`, `.path`, ... (uploads.md)")
        }
        "upload_add_header" => u("a header-policy plugin's `response.set` on the upload location"),
        _ => None,
    }
}

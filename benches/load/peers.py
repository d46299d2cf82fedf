"""Config writers for the load bench: the same N tokens for scangate, nginx and HAProxy, and the
backend that all of them forward to.

Every file lands in one work folder. Token i is deterministic, so every proxy holds the same set and
a rerun holds the same set again.
"""

import base64
import hashlib
import hmac
import os

# The HMAC key of every bench config (32 bytes), stored as scangate's key file format requires.
KEY = bytes(range(32))
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# What the backend answers: Scan Engine's reply to a clean scanmemory.
SCAN_JSON = '{"object":"memory","scanResult":"CLEAN"}'
# The request every load run sends: a small scanmemory call.
SCAN_PATH = "/api/v3.0/scanmemory"
SCAN_BODY = '{"timeout":"10000","object":"' + base64.b64encode(b"\0" * 96).decode() + '"}'


def token(i, salt=""):
    """Token i: `sg_` plus 44 base62 characters, like a minted one."""
    n = int.from_bytes(hashlib.sha256(f"scangate-bench{salt}-{i}".encode()).digest(), "big")
    chars = []
    for _ in range(44):
        n, r = divmod(n, 62)
        chars.append(BASE62[r])
    return "sg_" + "".join(chars)


def value(tok):
    """scangate's `Value`: base64(HMAC-SHA-512(key, token))."""
    return base64.b64encode(hmac.new(KEY, tok.encode(), hashlib.sha512).digest()).decode()


def stable_index(n):
    """The token every load run sends: in the middle of the set."""
    return n // 2


def tokens(n, salt=""):
    return [(f"client-{i}", token(i, salt)) for i in range(n)]


def write_token_files(work, n, salt="", stable=None):
    """Writes the N tokens as nginx map, HAProxy map and scangate <Token> elements.

    `stable`, when given, is a (name, token) pair that every file holds too, whatever the salt.
    Returns the paths.
    """
    toks = tokens(n, salt)
    if stable is not None:
        toks[stable_index(n)] = stable
    tag = f"{n}{salt}"
    paths = {
        "nginx": os.path.join(work, f"tokens-{tag}.nginx.map"),
        "haproxy": os.path.join(work, f"tokens-{tag}.haproxy.map"),
        "scangate": os.path.join(work, f"tokens-{tag}.xml-part"),
    }
    with open(paths["nginx"], "w") as ng, open(paths["haproxy"], "w") as hp, open(
        paths["scangate"], "w"
    ) as sg:
        for name, tok in toks:
            ng.write(f'"Bearer {tok}" {name};\n')
            hp.write(f"{tok} {name}\n")
            sg.write(
                f"        <Token><Name>{name}</Name><Value>{value(tok)}</Value>"
                f"<Enabled>1</Enabled></Token>\n"
            )
    return paths


def write_certificate(work):
    """A self-signed EC P-256 certificate for 127.0.0.1 in `work`: the `tls` argument of the
    config writers here (`cert` and `key` for scangate and nginx, `pem` for HAProxy)."""
    import subprocess
    cert, key, pem = (os.path.join(work, n) for n in ("tls.crt", "tls.key", "tls.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    with open(pem, "w") as f:
        f.write(open(cert).read() + open(key).read())
    return {"cert": cert, "key": key, "pem": pem}


def write_key(work):
    path = os.path.join(work, "scangate.key")
    with open(path, "w") as f:
        f.write(base64.b64encode(KEY).decode() + "\n")
    os.chmod(path, 0o600)
    return path


def scangate_xml(listen, upstream, token_part, auth=True, tls=None, admin_port=None,
                 engines=None):
    """A scangate config. `listen` is `http://ip:port` or `https://ip:port`. `upstream` is one
    nginx backend: no active checks (it has no basesdate) and the per-engine cap of the earlier
    runs (1024), so those phases compare as before. `engines` = (URLs, MaxSessions,
    QueueTimeoutMs) puts scangate in front of scan engines instead, with default checks."""
    if engines:
        urls, max_sessions, queue_ms = engines
        upstreams = "".join(f"<Upstream>{u}</Upstream>" for u in urls)
        pool = (f"<MaxSessions>{max_sessions}</MaxSessions>"
                f"<QueueTimeoutMs>{queue_ms}</QueueTimeoutMs>")
    else:
        upstreams = f"<Upstream>{upstream}</Upstream>"
        pool = "<MaxSessions>1024</MaxSessions><HealthCheckIntervalMs>0</HealthCheckIntervalMs>"
    with open(token_part) as f:
        token_elems = f.read()
    tls_elems = ""
    if tls:
        tls_elems = (
            f"    <TlsCertificateFile>{tls['cert']}</TlsCertificateFile>\n"
            f"    <TlsCertificateKeyFile>{tls['key']}</TlsCertificateKeyFile>\n"
        )
        if not tls.get("resumption", True):
            tls_elems += "    <TlsSessionTickets>0</TlsSessionTickets>\n"
    admin = f"    <AdminConnectionString>127.0.0.1:{admin_port}</AdminConnectionString>\n"
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Configuration>
  <ServerSettings>
    <ConnectionString>{listen}</ConnectionString>
    <MaxTCPFileSize>4294967296</MaxTCPFileSize>
    <SessionTimeout>120000</SessionTimeout>
{tls_elems}    <KeepAliveSettings><Enabled>1</Enabled><TimeoutMs>0</TimeoutMs><MaxRequests>0</MaxRequests></KeepAliveSettings>
    <AuthSettings>
      <UseAccessToken>{1 if auth else 0}</UseAccessToken>
      <AuthRequestField>Authorization</AuthRequestField>
      <UseBearerAuthScheme>1</UseBearerAuthScheme>
      <AccessTokens>
{token_elems}      </AccessTokens>
    </AuthSettings>
  </ServerSettings>
  <GatewaySettings>
    <Upstreams>{upstreams}</Upstreams>
    <UpstreamSettings>{pool}</UpstreamSettings>
    <TokenKeyFile>scangate.key</TokenKeyFile>
{admin if admin_port else ""}    <Realm>bench</Realm>
  </GatewaySettings>
</Configuration>
"""


def _nginx_common(work, name, workers):
    user = "user root root;\n" if os.geteuid() == 0 else ""
    tmp = os.path.join(work, f"{name}-tmp")
    os.makedirs(tmp, exist_ok=True)
    return f"""{user}worker_processes {workers};
pid {work}/{name}.pid;
error_log {work}/{name}.error.log warn;
daemon off;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_max_body_size 0;
"""


def nginx_backend(work, port, dav_root, workers=1):
    """The backend: a fixed scan-engine JSON for everything, and a PUT sink for uploads that
    reads the whole body (WebDAV) before it answers."""
    return _nginx_common(work, "backend", workers) + f"""  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      default_type application/json;
      return 200 '{SCAN_JSON}';
    }}
    location /upload/ {{
      dav_methods PUT;
      root {dav_root};
      create_full_put_path on;
      client_body_temp_path {dav_root}/.tmp;
    }}
  }}
}}
"""


def nginx_proxy(work, name, port, backend_port, token_map, n_tokens, workers=1, tls=None):
    """nginx doing scangate's job: `map $http_authorization`, 401 on a miss, forward the name
    instead of the token, upstream keep-alive, unbuffered uploads."""
    listen = f"listen 127.0.0.1:{port} backlog=4096"
    tls_lines = ""
    if tls:
        listen += " ssl"
        # nginx 1.22's default protocols stop at TLS 1.2; every proxy here speaks TLS 1.3.
        tls_lines = (f"    ssl_certificate {tls['cert']};\n    ssl_certificate_key {tls['key']};\n"
                     f"    ssl_protocols TLSv1.2 TLSv1.3;\n")
        if not tls.get("resumption", True):
            # No session cache and no tickets at all (OpenSSL sends two TLS 1.3 tickets even
            # with both off, unless NumTickets is 0).
            tls_lines += ("    ssl_session_tickets off;\n    ssl_session_cache off;\n"
                          "    ssl_conf_command NumTickets 0;\n")
    # The hash must hold every key; nginx refuses to start otherwise.
    hash_max = max(2048, 2 * n_tokens)
    return _nginx_common(work, name, workers) + f"""  map_hash_max_size {hash_max};
  map_hash_bucket_size 128;
  map $http_authorization $token_name {{
    default "";
    include {token_map};
  }}
  upstream backend {{
    server 127.0.0.1:{backend_port};
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
  }}
  server {{
    {listen};
{tls_lines}    location / {{
      if ($token_name = "") {{
        add_header WWW-Authenticate 'Bearer realm="bench"' always;
        return 401 '{{"error":"invalid API token"}}';
      }}
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
      proxy_set_header X-Scangate-Token-Name $token_name;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }}
  }}
}}
"""


def haproxy(work, name, port, backend_port, token_map, threads=1, tls=None):
    """HAProxy doing the same job: a map lookup on the token, 401 on a miss, `http-reuse always`."""
    backend = f"""backend scan
  http-reuse always
  server engine 127.0.0.1:{backend_port}
"""
    return _haproxy(work, name, port, token_map, threads, tls, backend)


def haproxy_engines(work, name, port, engine_ports, token_map, max_sessions, queue_ms):
    """HAProxy in front of scan engines as scangate's engine pool is: `maxconn` per server (the
    session cap), the backend queue with `timeout queue`, least connections, the same active check
    (GET basesdate, inter 2 s, fall 3, rise 2) and one redispatch on a failed connect."""
    servers = "".join(
        f"  server e{i} 127.0.0.1:{p}\n" for i, p in enumerate(engine_ports, 1)
    )
    backend = f"""backend scan
  balance leastconn
  http-reuse always
  timeout queue {queue_ms}ms
  retries 1
  option redispatch 1
  option httpchk GET /api/v3.0/basesdate
  default-server maxconn {max_sessions} check inter 2s fall 3 rise 2
{servers}"""
    return _haproxy(work, name, port, token_map, 1, None, backend)


def _haproxy(work, name, port, token_map, threads, tls, backend):
    bind = f"bind 127.0.0.1:{port}"
    cache = ""
    if tls:
        bind += f" ssl crt {tls['pem']}"
        if not tls.get("resumption", True):
            # HAProxy 2.6 has no NumTickets: it still sends two TLS 1.3 tickets, which no
            # longer resume anything.
            bind += " no-tls-tickets"
            cache = "  tune.ssl.cachesize 0\n"
    return f"""global
{cache}  nbthread {threads}
  maxconn 4096
  pidfile {work}/{name}.pid

defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  timeout http-request 10s

frontend gateway
  {bind}
  http-request deny deny_status 401 unless {{ req.hdr(authorization) -m beg "Bearer " }}
  http-request set-var(txn.token_name) req.hdr(authorization),field(2,' '),map_str({token_map})
  http-request deny deny_status 401 unless {{ var(txn.token_name) -m found }}
  http-request del-header authorization
  http-request set-header X-Scangate-Token-Name %[var(txn.token_name)]
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http unless {{ ssl_fc }}
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  option forwardfor
  default_backend scan

{backend}"""
